/* exec: the stepper. Owns the backend state of one loaded model (weights on
 * the device, activations, KV cache), the program of the current pass and
 * its program counter, breakpoints, kernel choices, check mode, the loaded
 * reference dump, and runs ops one at a time or to a stop. It never prints:
 * the REPL and the Lua binding drive it through this API. */
#ifndef XF_EXEC_H
#define XF_EXEC_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "kernels.h"
#include "model.h"
#include "program.h"
#include "refdump.h"
#include "tensor.h"

typedef struct xf_exec xf_exec;

typedef enum xf_run_mode {
    XF_RUN_STEP,     /* count ops */
    XF_RUN_NEXT,     /* to the end of the current layer */
    XF_RUN_FINISH,   /* to the end of the pass, breakpoints ignored */
    XF_RUN_CONTINUE, /* to a breakpoint, a check failure or the end of the pass */
} xf_run_mode;

typedef enum xf_stop {
    XF_STOP_NONE = 0,
    XF_STOP_STEP,      /* the step count ran out */
    XF_STOP_BREAK,     /* a breakpoint hit: exec_last_break() */
    XF_STOP_CHECK,     /* check break: the op just run is over its tolerance */
    XF_STOP_HOOK,      /* the on-op hook asked to stop */
    XF_STOP_END,       /* the pass is complete */
    XF_STOP_INTERRUPT, /* the interrupt flag was raised */
} xf_stop;

typedef enum xf_check_mode { XF_CHECK_OFF = 0, XF_CHECK_ON, XF_CHECK_BREAK } xf_check_mode;

typedef enum xf_cond_kind {
    XF_COND_ALWAYS = 0, XF_COND_NAN, XF_COND_INF, XF_COND_ABSMAX_GT, XF_COND_NMSE_REF_GT, XF_COND_FN
} xf_cond_kind;

/* Condition callback for breakpoints the engine cannot evaluate itself
 * (Lua expressions): 1 stop, 0 go on, -1 error (text in err). */
typedef int (*xf_cond_fn)(void *ud, xf_exec *ex, int op, xf_err *err);

typedef struct xf_break {
    int id;
    char *pattern;
    char *cond_text;  /* as typed, or NULL */
    xf_cond_kind cond;
    double x;
    xf_cond_fn fn;
    void *ud;
    void (*ud_free)(void *ud);
    int hits;
} xf_break;

typedef struct xf_check_row {
    int op;
    const char *variant; /* the variant that ran */
    xf_diff diff;        /* variant vs. cpu ref on the same inputs */
    double tol_rel;
    bool over;
} xf_check_row;

typedef struct xf_where {
    bool active;       /* a pass exists */
    int pass_no;       /* passes started since the model was loaded (1-based) */
    int pos0, n_tokens, n_past;
    int pc;            /* next op to run; == n_ops when the pass is complete */
    int n_ops;
    int last;          /* last op run, -1 if none */
} xf_where;

xf_exec *exec_new(xf_model *m, kern_backend backend, int n_threads, xf_err *err);
/* A second stepper of owner's model on owner's backend (bench's) that
 * borrows owner's weights on the device and its kept prefill codes instead
 * of copying them: its own KV cache, pass, breakpoints, kernel choice and
 * scratch. owner must outlive it and never changes its weights. */
xf_exec *exec_new_beside(const xf_exec *owner, int n_threads, xf_err *err);
void exec_free(xf_exec *ex);
xf_model *exec_model(const xf_exec *ex);
kern_backend exec_backend(const xf_exec *ex);
/* Layer matrices whose prefill codes are kept on the device (cuda; 0 on
 * the cpu, or where the card had no room: exec_codes.c) and their bytes. */
void exec_codes_kept(const xf_exec *ex, int *n, size_t *bytes);
const xf_program *exec_program(const xf_exec *ex);
void exec_where(const xf_exec *ex, xf_where *w);

/* The memory bandwidth of ex's backend (kernels.h kern_membw: bytes/s and
 * how it was measured): cpu, ex's threads streaming a buffer larger than the
 * L3; cuda, a device-to-device copy. Measured on the first call for a
 * backend (cpu: and thread count) in the process, cached after. 0, or -1. */
int exec_mem_bandwidth(const xf_exec *ex, kern_membw *out, xf_err *err);

/* Starts a pass over tokens. continue_cache: at the end of the cache (a
 * decode pass; the previous pass must be complete), else from position 0. */
int exec_begin(xf_exec *ex, const int32_t *tokens, int n, bool continue_cache, xf_err *err);
int exec_run(xf_exec *ex, xf_run_mode mode, int count, xf_stop *why, xf_err *err);
/* tokens of the current pass */
const int32_t *exec_tokens(const xf_exec *ex, int *n);
/* every token in the context up to the end of the current pass, by position */
const int32_t *exec_history(const xf_exec *ex, int *n);

/* The output of op i as f32 host data (dst holds op numel); -1 if not computed in this pass. */
int exec_tensor_read(xf_exec *ex, int op, float *dst, xf_err *err);
bool exec_tensor_ready(const xf_exec *ex, int op);
/* True while op is the logits of a prefill whose rows before the last are
 * still owed: the pass computed the last row alone (the one the next token
 * comes from), and every reader below computes the rest first, with the
 * same variant. Readers need not care; tests and `info` may. */
bool exec_tensor_deferred(const xf_exec *ex, int op);
/* What of op's output is still owed: XF_OWED_NONE, XF_OWED_ALL (a prefill's
 * fused attention left kq / kq_soft unwritten) or XF_OWED_ROWS (the logits
 * rows before the last). A reader computes it first; `print` says so. */
enum { XF_OWED_NONE = 0, XF_OWED_ALL = 1, XF_OWED_ROWS = 2 };
int exec_tensor_owed(const xf_exec *ex, int op);
/* Only what is shown: the elements at flat indices idx[0..n) (ascending or
 * not), copying from the device no more than the span they lie in. */
int exec_tensor_gather(xf_exec *ex, int op, const int64_t *idx, int64_t n, float *dst, xf_err *err);
/* Statistics of op's output where it lives: reduced on the GPU (8 numbers
 * come back, not the tensor), read in place on the CPU. */
int exec_tensor_stats(xf_exec *ex, int op, xf_stats *st, xf_err *err);
/* Finds a tensor by canonical name or alias: op index or -1 (err says why). */
int exec_tensor_find(const xf_exec *ex, const char *name, xf_err *err);
/* The last row of the logits of the last complete pass, dst[n_vocab]. */
int exec_last_logits(xf_exec *ex, float *dst, xf_err *err);

/* Kernel selection: op == -1 means every op kind. */
int exec_kernel_select(xf_exec *ex, int op, const char *variant, xf_err *err);
const kern_variant *exec_kernel_selected(const xf_exec *ex, kern_op op);
/* Extra variants (tests register deliberately wrong ones); v must outlive ex. */
int exec_variant_add(xf_exec *ex, const kern_variant *v, xf_err *err);
/* Every variant usable on this backend (built-in then extras). */
int exec_variants(const xf_exec *ex, const kern_variant **out, int cap);

/* Breakpoints. cond may be NULL; fn handles conditions that are not
 * nan/inf/absmax>X/nmse(ref)>X (NULL: such a condition is an error). */
int exec_break_add(xf_exec *ex, const char *pattern, const char *cond, xf_cond_fn fn, void *ud,
                   void (*ud_free)(void *), xf_err *err);
int exec_break_delete(xf_exec *ex, int id, xf_err *err); /* id -1: all */
const xf_break *exec_breaks(const xf_exec *ex, int *n);
const xf_break *exec_last_break(const xf_exec *ex);
/* Breakpoint conditions are evaluated right after their op: callers may read the op's tensor. */

void exec_check_set(xf_exec *ex, xf_check_mode mode);
xf_check_mode exec_check_get(const xf_exec *ex);
const xf_check_row *exec_check_rows(const xf_exec *ex, int *n);
/* Runs op's cpu ref on the inputs of this pass and compares with its output. */
int exec_check_op(xf_exec *ex, int op, xf_check_row *row, xf_err *err);

/* Default relative tolerance (x max|ref|) of an op kind, for check and compare. */
double exec_tolerance(kern_op kind);

int exec_ref_load(xf_exec *ex, const char *path, xf_err *err);
const refdump *exec_ref(const xf_exec *ex);

void exec_set_interrupt(xf_exec *ex, volatile sig_atomic_t *flag);
/* Called after every op: return 1 to stop (XF_STOP_HOOK), -1 for an error. NULL clears. */
void exec_set_hook(xf_exec *ex, int (*fn)(void *ud, xf_exec *ex, int op, xf_err *err), void *ud);
/* Per-op wall time (ms) of the ops run while timing is on (syncs after every op). */
void exec_set_timing(xf_exec *ex, bool on);
const double *exec_op_ms(const xf_exec *ex);

/* The fast path (cuda backend). A decode pass (one token) that runs with
 * `continue` or `finish` while nothing looks at single ops (check off, no
 * hook, no timing) is captured once as a CUDA graph and replayed for later
 * passes: one launch instead of one per op, no sync until the pass ends.
 * Breakpoints (continue only) split the pass into graphs that end at the
 * ops their patterns name, where the condition is evaluated as usual; a
 * pass that stops there goes on graphed or by steps. Every tensor of the
 * pass is ready afterwards, bit-identical to running the ops one by one.
 * Graphs are captured again when the kernel selection or a buffer changed.
 * The cpu backend ignores this. */
typedef enum xf_graph_mode {
    XF_GRAPH_OFF = 0, /* every op launched one by one */
    XF_GRAPH_ON,      /* graphs with fast-path fusions (exec_graph_fusions lists them; each
                         bit-identical to the ops it replaces) */
    XF_GRAPH_UNFUSED, /* graphs of one kernel per op (to compare with ON) */
    XF_GRAPH_MEGA,    /* ON's fusions, their kernels run as phases of the decode megakernel
                         (kernels_cuda.h kern_cuda_mega_*): the same bits, fewer launches */
} xf_graph_mode;

typedef struct xf_graph_stats {
    long captures;    /* graphs captured and instantiated */
    long replays;     /* graph launches */
    long fallbacks;   /* captures that failed: those passes ran op by op */
    size_t nodes;     /* nodes of the last whole-pass graph (0 if none yet) */
    long watch_trips; /* graphed ranges where a breakpoint condition held: run again op by op */
    int mega_phases;  /* of the last whole-pass graph: kernels run as megakernel phases */
    int mega_launches; /* ... and the megakernel launches they make (0: no megakernel) */
    long mm_fused;     /* prefill launches that ran 2 or 3 matmuls of one input (exec_fuse.c) */
} xf_graph_stats;

/* Why the next one-token pass run by continue/finish would go op by op
 * instead of as CUDA graphs (a sentence: "check is on: each op is judged
 * alone"; static text or written into buf[n]), or NULL when it would be
 * graphed. */
const char *exec_graph_why(const xf_exec *ex, char *buf, size_t n);
/* Why a prefill run by continue/finish on cuda would run a layer's matmuls
 * that read the same input (gate and up; q, k and v) one launch each
 * instead of in one (kern_cuda_matmul_multi), or NULL where it would
 * where the kernel takes them. */
const char *exec_mm_fuse_why(const xf_exec *ex, char *buf, size_t n);
/* On cuda, which product a prefill's matmuls run (the selected variant; for
 * opt: wgmma and its block rows, or mma.sync and why; BF16 and F32 layer
 * matrices: cuBLAS SGEMM or, with XF_SPLIT_FLOAT, the tensor cores) into
 * buf; NULL on the cpu. */
const char *exec_mm_path(const xf_exec *ex, char *buf, size_t n);
/* Why a prefill (two or more tokens) run by continue/finish would run each
 * layer's kq, kq_soft and kqv op by op instead of as one fused call
 * (DESIGN.md "Fused attention of a prefill"; a sentence, static text or
 * written into buf[n]), or NULL when it would fuse them (but in a layer
 * where a breakpoint names kq or kq_soft). */
const char *exec_attn_fuse_why(const xf_exec *ex, char *buf, size_t n);
/* What looks at every op of a pass (check, a hook, profile's timing, a
 * write into the pass or a write hook): the reason, a sentence, why the
 * pass runs op by op, unfused and not as graphs; NULL when nothing does */
const char *exec_looks_why(const xf_exec *ex);
/* The fast-path fusions under the current kernel selection: which apply
 * (fused) and which do not because a selected variant is not one they
 * reproduce (unfused, each "name (op variant)"), comma lists in buffers of
 * n bytes; "" for none. Only meaningful with graphs on. */
void exec_graph_fusions(const xf_exec *ex, char *fused, char *unfused, size_t n);

void exec_set_graph_mode(xf_exec *ex, xf_graph_mode mode); /* default XF_GRAPH_ON */
xf_graph_mode exec_graph_mode(const xf_exec *ex);
void exec_graph_stats(const xf_exec *ex, xf_graph_stats *st);
/* With the breakpoints set now, a graphed pass checks the conditions of
 * *on_device ops inside the graph (nan, inf, absmax>X: no split, no host
 * read) and splits after *splits ops (a breakpoint without a condition,
 * or one only the host can judge: Lua, nmse(ref)). Both 0 off CUDA. */
void exec_graph_watch_plan(xf_exec *ex, int *on_device, int *splits);

/* The logit lens (engine/lens.c): the model's final norm and output
 * projection applied to x[n_embd] (one row of a residual, host memory),
 * logits[n_vocab] out. Needs a pass (its out_norm and logits ops give the
 * arguments); runs the cpu reference kernels on the weights' host copies,
 * whatever the backend. */
int exec_logit_lens(xf_exec *ex, const float *x, float *logits, xf_err *err);

/* --- writing into the pass (exec_write.c) and the pass history (passes.c) ---
 * A write goes where the tensor lives (host memory, or the device through
 * to_dev), into the output of an op that ran in this pass and that no later
 * op has read yet (else refused, naming the readers): the ops that read it
 * run after and use the new value. A k/v op's KV cache rows are written
 * too. The pass is marked written (exec_pass_written) and its rest runs op
 * by op, never as a CUDA graph. exec_begin clears the mark. */
int exec_tensor_write(xf_exec *ex, int op, const int64_t *idx, int64_t n, const float *vals, int64_t nv,
                      xf_err *err); /* vals[nv]: nv == n, or 1 (that value everywhere) */
/* later ops of this pass that read op's output and already ran: their count, the first cap in out */
int exec_tensor_consumed(const xf_exec *ex, int op, int *out, int cap);
/* Notes an intervention on this pass (its text as the user typed it; kept once). */
int exec_note_intervention(xf_exec *ex, const char *text, xf_err *err);
const char *const *exec_interventions(const xf_exec *ex, int *n);
/* the program counter when intervention i was made (ops run before it) */
int exec_intervention_pc(const xf_exec *ex, int i);
bool exec_pass_written(const xf_exec *ex);
/* an earlier pass of this context was written into (its rows of the KV cache) */
bool exec_context_written(const xf_exec *ex);
/* Called after every op (after check, before the on-op hook and
 * breakpoints): it may write into the op's output. While one is set every
 * pass runs op by op. 0 go on, -1 error. NULL clears. */
void exec_set_write_hook(xf_exec *ex, int (*fn)(void *ud, xf_exec *ex, int op, xf_err *err), void *ud);
bool exec_write_hooked(const xf_exec *ex);

typedef struct xf_kept_tensor {
    char name[XF_NAME_MAX];
    int ndim;
    int64_t shape[4];
    int64_t numel;
    float *data; /* host copy */
} xf_kept_tensor;

typedef struct xf_kept_pass {
    int pass_no, pos0, n_tokens;
    int32_t *tokens;
    char **iv;   /* interventions, as typed */
    int n_iv;
    bool written, ctx_written;
    xf_kept_tensor *t;
    int n_t;
    size_t bytes;  /* of t */
    size_t want;   /* the bytes the matching tensors needed */
    bool over_cap; /* they alone were over the cap: none kept */
    bool oom;      /* out of host memory: none kept */
} xf_kept_pass;

/* What the next passes keep: tensors matching patterns (globs; none: only
 * the pass's tokens and interventions), the last `passes` passes, their
 * tensors within cap bytes (defaults: 8 passes, 256 MB). */
int exec_keep_set(xf_exec *ex, char *const *patterns, int n_pat, int passes, size_t cap, xf_err *err);
int exec_keep_config(const xf_exec *ex, char *const **patterns, int *passes, size_t *cap); /* n_pat */
/* bytes the ops of this program that match take */
size_t exec_keep_estimate(const xf_exec *ex, char *const *patterns, int n_pat);
int exec_kept_count(const xf_exec *ex);
const xf_kept_pass *exec_kept(const xf_exec *ex, int back); /* back 1: the pass before this one; NULL none */
const xf_kept_tensor *exec_kept_find(const xf_kept_pass *kp, const char *canonical);
size_t exec_kept_bytes(const xf_exec *ex);

#endif
