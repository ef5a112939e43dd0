/* exec_internal: the state of the stepper (struct xf_exec) and the calls
 * that the exec_*.c files make into each other. Private to engine/exec*.c:
 * everything else goes through exec.h.
 *   exec.c         life cycle, kernel selection, scratch, pass begin, the op loop, run modes
 *   exec_graph.c   the CUDA graph fast path (capture, replay, fusions)
 *   exec_break.c   breakpoints: patterns, conditions, evaluation after an op
 *   exec_tensor.c  reading, gathering and statistics of the activations of a pass
 *   exec_check.c   check mode (cpu ref on the same inputs) and the tolerance table
 *   exec_write.c   writing into the pass (set, patch, ablate, write hooks)
 *   exec_codes.c   the prefill product's weight codes kept on the device
 *   exec_fuse.c    the op loop's fusions of a prefill (attention; matmuls of one input)
 *   passes.c       the history of the last passes and the tensors they keep */
#ifndef XF_EXEC_INTERNAL_H
#define XF_EXEC_INTERNAL_H

#include "exec.h"
#ifdef XF_HAVE_CUDA
#include "kernels_cuda.h"
#endif

#define XF_MAX_EXTRA 32
#define XF_GRAPH_SLOTS 32 /* graphs kept: one per (first op, last op) range of a decode pass */
#define XF_STEP_WORDS 4   /* {pos0, n_kv, token, 0}: kernels.h KERN_STEP_* */

#ifdef XF_HAVE_CUDA
typedef struct xf_graph_slot {
    int s, e; /* ops s..e, inclusive */
    int wgen; /* brk_gen of the breakpoints its watch node checks; -1: no watch node */
    kern_cuda_graph *g;
    kern_watch *wdev; /* device [nw]: what its watch node checks (exec's memory) */
    int nw;
    void *mdev;       /* device: its megakernel launches' phase table (exec's memory), or NULL */
} xf_graph_slot;
#endif

struct xf_exec {
    xf_model *m;
    kern_backend backend;
    const kern_mem_ops *mem;
    kern_ctx ctx;
    kern_ctx host_ctx;           /* for check: cpu ref runs single-threaded */
    const void **wdev;           /* [n_weights] weight data on the backend */
    void **wdev_owned;           /* [n_weights] device copies to free (cuda) */
    bool borrowed;               /* wdev and ctx.codes are another stepper's (exec_new_beside) */
    float **kcache, **vcache;    /* [n_layer] -> [n_ctx, KV, Dh] on the backend */
    xf_program prog;
    int pass_no;
    int pc, last;
    int n_past;                  /* cache rows valid after the last complete pass */
    bool active;
    int32_t *tokens;             /* [n] tokens of the current pass (host) */
    int tok_cap;                 /* room in tokens */
    int32_t *hist;               /* [n_ctx] token at each position of the context */
    int n_tokens;
    void **buf;                  /* [n_ops] op outputs on the backend */
    size_t *buf_cap;             /* floats */
    int n_buf;
    bool *ready;                 /* [n_ready] computed in this pass */
    /* outputs owed (exec.c): ops that a faster form of the pass left
     * unwritten, computed when something first reads them (exec_lazy_settle)
     * by the variant recorded here: the logits of a prefill (owed_rows: all
     * rows but the last, which ran), kq and kq_soft under the cpu's fused
     * attention (the whole tensor) */
    const kern_variant **owed;   /* [n_ready]: the variant, or NULL when nothing is owed */
    bool *owed_rows;             /* [n_ready]: only the rows before the last are owed */
    int n_owed;                  /* ops with something owed */
    int n_ready;                 /* ops of the arrays ready, owed, op_ms, check_rows */
    int move_ok_n;               /* token count whose programs exec_begin moves (0: none yet) */
    double *op_ms;               /* [n_ops] */
    bool timing;
    void **ev;                   /* cuda: [2 * n_ops] start/end events of each op while timing */
    int n_ev;
    const kern_variant *sel[KERN_OP_COUNT];
    const kern_variant *extra[XF_MAX_EXTRA];
    int n_extra;
    xf_break *brk;
    int n_brk, brk_cap, next_brk_id;
    const xf_break *last_brk;
    xf_check_mode check;
    xf_check_row *check_rows;    /* [n_ops] */
    int n_check;
    refdump *ref;
    volatile sig_atomic_t *interrupt;
    int (*hook)(void *, xf_exec *, int, xf_err *);
    void *hook_ud;
    /* writing into the pass (exec_write.c), the pass history (passes.c) */
    bool written;                /* this pass was written into: the rest runs op by op */
    bool ctx_written;            /* an earlier pass of this context was */
    char **iv;                   /* [n_iv] interventions of this pass, as typed */
    int *iv_pc;                  /* [n_iv] the program counter when each was made */
    int n_iv, iv_cap;
    int (*whook)(void *, xf_exec *, int, xf_err *);
    void *whook_ud;
    struct xf_keep *keep;        /* the last passes and what they keep; NULL none yet */
    /* breakpoint pattern matches, cached: op names are the same in every pass */
    unsigned char *bmatch;       /* [n_brk][bmatch_ops]: breakpoint k matches op i */
    bool *bany;                  /* [bmatch_ops]: some breakpoint matches op i */
    bool *bhost;                 /* [bmatch_ops]: one whose condition only the host can judge (none, Lua, nmse) */
    bool *bdev;                  /* [bmatch_ops]: one with nan, inf or absmax>X (a graph checks those itself) */
    int brk_gen;                 /* changes with every breakpoint added or deleted */
    int bmatch_ops;              /* ops the cache holds; -1 when the breakpoints changed */
    /* the fast path (cuda): graphs of decode passes */
    xf_graph_mode graph_mode;
    xf_graph_stats gstats;
#ifdef XF_HAVE_CUDA
    int32_t *step_host;          /* pinned [XF_STEP_WORDS]: what the graphs copy to step_dev first */
    int32_t *step_dev;           /* device [XF_STEP_WORDS]: kernels.h dev_step */
    int *attn_cnt;               /* device [2 * n_head], zeros between launches: kern_cuda_attn_fused's tickets */
    float *attn_part;            /* device [attn_part_floats]: its chunk sums of a long row */
    int *watch_host;             /* pinned [1]: set by a graph's watch node when a condition holds */
    int *watch_dev;              /* its device address; NULL: graphs split at every breakpoint instead */
    int64_t attn_part_floats;
    bool inflight;               /* a graph was launched since the last sync */
    bool graph_failed;           /* a capture failed: op by op until the key changes */
    xf_graph_slot gslot[XF_GRAPH_SLOTS];
    int n_gslot, gslot_next;
    /* the key the graphs were captured for: kernels, buffers, scratch */
    bool gkey_valid;
    const kern_variant *gsel[KERN_OP_COUNT];
    void **gbuf;                 /* [n_gbuf] copy of buf */
    int n_gbuf;
    void *gscratch;
#endif
};

/* exec.c: the kernel arguments of op i with pointers on the backend. */
void exec_op_args(const xf_exec *ex, int i, kern_args *a);

/* exec.c: runs op i alone with the selected variant (its KV cache store,
 * its owed rows); the scratch grown to `need` bytes; op's output owed to
 * its first reader, to be computed by v (rows: all but the last row). */
int exec_run_op(xf_exec *ex, int i, xf_err *err);
/* exec.c: op i's output stored into the KV cache where the op is k or v
 * (op->cache); 0 for any other op */
int exec_cache_store(xf_exec *ex, int i, xf_err *err);
int exec_scratch_grow(xf_exec *ex, size_t need, xf_err *err);
void exec_owe(xf_exec *ex, int op, const kern_variant *v, bool rows);
/* exec_fuse.c: at op i of an op-by-op run, the ops it ran fused (their
 * outputs ready, breakpoints for the last one still to check), 0 where no
 * fusion applies (run op i alone), -1 on error. */
int exec_fuse_run(xf_exec *ex, int i, xf_run_mode mode, bool watch, xf_err *err);
/* exec_fuse.c: the scratch those fusions need beyond each op's own (0 where
 * none applies), for the pass's scratch */
size_t exec_fuse_scratch(const xf_exec *ex);

/* exec.c: computes what op's output still owes (exec.c: the logits of a
 * prefill, kq and kq_soft of a fused attention), its inputs' first; every
 * reader of an op's output calls it first. */
int exec_lazy_settle(xf_exec *ex, int op, xf_err *err);
/* exec_new, once the weights are on the device: keeps every layer matrix's
 * prefill codes there (exec_codes.c); -1 only on a device error */
int exec_codes_keep(xf_exec *ex, xf_err *err);

/* exec_break.c: which breakpoints match which ops (cached per change of the
 * breakpoints), and the breakpoints after op i (just run): 1 if one stopped
 * (why set), 0 if none, -1 on error. */
int exec_brk_cache(xf_exec *ex, xf_err *err);
/* a condition a graph's watch node can judge (kern_cuda_watch): nan, inf, absmax>X */
bool exec_cond_on_device(xf_cond_kind c);
int exec_breaks_after(xf_exec *ex, int i, xf_stop *why, xf_err *err);

/* exec_write.c: a pass begins (the mark and the interventions go), and the end */
void exec_write_begin(xf_exec *ex, bool continue_cache);
void exec_write_free(xf_exec *ex);
/* passes.c: the pass that ends is kept (called before the next begins); the end */
void exec_keep_snapshot(xf_exec *ex);
void exec_keep_free(xf_exec *ex);

#ifdef XF_HAVE_CUDA
/* exec_graph.c: drops every captured graph (the key changed). */
void exec_graph_clear(xf_exec *ex);
/* A pass that nothing looks into op by op, on kernels that can be captured. */
bool exec_graph_eligible(const xf_exec *ex, xf_run_mode mode);
/* The rest of the pass as graphs: 0 complete or stopped (why set), 1 run
 * the rest op by op, -1 error. */
int exec_graph_run(xf_exec *ex, xf_run_mode mode, xf_stop *why, xf_err *err);
#endif

#endif
