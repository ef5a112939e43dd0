# A measurement-only patch for a COPY of the tree (scripts/gpu-mega.sh TRACE=1;
# the product never has it): per-phase times of the decode
# megakernel, printed by the device at its 100th launch; XF_MEGA_FLAGS bit 64
# skips the matrix phases' products (wrong results: timing only). Works on
# main's megakernel (virtual blocks) and on wip-mega-ring's.
import sys
p = sys.argv[1] + '/kernels/cuda/decode_mega.cu'
s = open(p).read()

def sub(alts, fn, need=True):
    global s
    for a in alts:
        if a in s:
            s = s.replace(a, fn(a), 1)
            return
    if need:
        raise SystemExit('trace.py: no anchor among %r' % (alts,))

sub(['#define MK_THREADS GV_THREADS'], lambda a: a + '\n#include <cstdio>\n__device__ int mk_g_skip;')
sub(['template <int MINB>\n__global__ void __launch_bounds__(MK_THREADS, MINB)'], lambda a: '''
__device__ unsigned long long mk_tr_s[8192], mk_tr_d[8192];
__device__ double mk_acc_w[8], mk_acc_b[8], mk_acc_n[8], mk_acc_tot, mk_ix_w[8192], mk_ix_b[8192];
__device__ unsigned mk_tr_launches;
__device__ __forceinline__ unsigned long long mk_now() { unsigned long long t; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); return t; }
''' + a)
sub(['    unsigned nbar = 0; /* barriers passed */'], lambda a: a + '\n    if (threadIdx.x == 0) mk_g_skip = flags & 64;')
sub(['        const mk_phase *p = ph + i;\n        int kind = p->kind;'], lambda a: a + '\n        if (blockIdx.x == 0 && threadIdx.x == 0 && i < 8192) mk_tr_s[i] = mk_now();')
sub(['            mk_grid_sync(bar, ++nbar * gridDim.x, flags);', '            mk_grid_sync(bar, ++nbar * gridDim.x);'],
    lambda a: '            if (threadIdx.x == 0 && i < 8192) atomicMax(&mk_tr_d[i], mk_now());\n' + a)
sub(['        if (J.act && u.j == 1)\n            mk_dots<WT>', '        if (J.act && ji == 1)\n            mk_dots<WT>'], lambda a: '        if (mk_g_skip) {} else\n' + a)
sub(['mk_env("XF_MEGA_FLAGS", 0, 0, 14) & (MK_F_NOPF | MK_F_NORMBAR | MK_F_SLEEP)', 'mk_env("XF_MEGA_FLAGS", 0, 0, 6) & (MK_F_NOPF | MK_F_NORMBAR)'],
    lambda a: 'mk_env("XF_MEGA_FLAGS", 0, 0, 127)')
sub(['        if (v == gridDim.x - 1) { /* every block is past every barrier */'], lambda a: a + r'''
            unsigned long long tend = mk_now();
            for (int i = 0; i < n && i < 8192; i++) {
                int kd = ph[i].kind & 7;
                if (kd == MK_NORM && ph[i].nvb == 1 && i + 1 < n && ph[i + 1].kind == MK_FM) kd = 0;
                unsigned long long d = mk_tr_d[i] ? mk_tr_d[i] : (i + 1 < n ? mk_tr_s[i + 1] : tend);
                unsigned long long nx = i + 1 < n ? mk_tr_s[i + 1] : tend;
                mk_acc_w[kd] += (double)(d - mk_tr_s[i]);
                mk_acc_b[kd] += (double)(nx - d);
                mk_acc_n[kd] += 1;
                mk_ix_w[i] += (double)(d - mk_tr_s[i]);
                mk_ix_b[i] += (double)(nx - d);
                mk_tr_d[i] = 0;
            }
            mk_acc_tot += (double)(tend - mk_tr_s[0]);
            if (++mk_tr_launches == 100) {
                const char *nm[8] = {"norm-every", "norm", "fm", "rope", "fa", "kqv", "?", "?"};
                printf("TRACE %u launches of %d phases; us a launch %.2f\n", mk_tr_launches, n, mk_acc_tot / 1000.0 / mk_tr_launches);
                for (int k = 0; k < 8; k++) if (mk_acc_n[k] > 0)
                    printf("TRACE %-10s phases/launch %6.1f  work us/phase %7.3f  barrier us/phase %7.3f  total work %8.2f bar %8.2f us/launch\n", nm[k], mk_acc_n[k] / mk_tr_launches,
                           mk_acc_w[k] / mk_acc_n[k] / 1000.0, mk_acc_b[k] / mk_acc_n[k] / 1000.0, mk_acc_w[k] / 1000.0 / mk_tr_launches, mk_acc_b[k] / 1000.0 / mk_tr_launches);
                for (int i = 0; i < n && i < 8192; i++) {
                    if (i >= 14 && i < n - 4) continue;
                    long long rows = 0;
                    if (ph[i].kind == MK_FM) for (int j = 0; j < ph[i].u.fm.n; j++) rows += ph[i].u.fm.j[j].m;
                    printf("TRACE #%-4d kind %d nvb %6u wt %2d rows %7lld  work %7.3f  barrier %6.3f us\n", i, ph[i].kind, ph[i].nvb, ph[i].wt, rows,
                           mk_ix_w[i] / 1000.0 / mk_tr_launches, mk_ix_b[i] / 1000.0 / mk_tr_launches);
                }
            }''')
open(p, 'w').write(s)
print('trace patch applied to', p)
