/* test_refdump_files: a dump as a file on disk: changed after `ref load`
 * (the copy read stays, a read says so), a FIFO refused at once, and the
 * writer's targets (devices, FIFOs, symlinks, read-only files refused; the
 * mode kept) and its never-a-partial-file promise. */
#include "refdump_util.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/sysmacros.h>

/* ------------------------------------------------- the file after `ref load` */

/* issue 14 item 3: the file truncated (or replaced) after it was loaded: a
 * read said "changed on disk" (before: SIGBUS through the mapping) */
static void test_file_changed(void **state)
{
    (void)state;
    /* a tensor past the first page: with the file mmapped, reading it after
     * the truncation was SIGBUS */
    refdump_writer *w = refdump_writer_new();
    static float big[8192];
    const int64_t s2[] = {2, 2}, sb[] = {8192};
    const float q[4] = {1, 2, 3, 4};
    const int32_t tok[3] = {7, 8, 9};
    big[8191] = 5.0f;
    add(w, "blk.0.q", REFDUMP_F32, 2, s2, q);
    add(w, "big", REFDUMP_F32, 1, sb, big);
    add(w, "prompt.tokens", REFDUMP_I32, 1, (const int64_t[]){3}, tok);
    size_t size;
    uint8_t *full;
    xf_err err = {{0}};
    assert_int_equal(refdump_writer_to_mem(w, &full, &size, &err), 0);
    refdump_writer_free(w);
    char path[512], other[600], want[1200];
    tu_tmp_path(path, sizeof path, ".safetensors");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(full, 1, size, f), size);
    fclose(f);
    refdump *r = refdump_open(path, &err);
    if (!r)
        fail_msg("%s", err.msg);
    const refdump_tensor *t = refdump_find(r, "big");
    static float got_big[8192];
    assert_int_equal(refdump_read_f32(r, t, got_big, &err), 0);
    assert_true(got_big[8191] == 5.0f);
    t = refdump_find(r, "blk.0.q");
    assert_non_null(t);
    float got[4];
    assert_int_equal(refdump_read_f32(r, t, got, &err), 0);
    assert_true(got[3] == 4.0f);

    assert_int_equal(truncate(path, 8), 0);
    snprintf(want, sizeof want, "%s: the file changed on disk since it was loaded", path);
    assert_int_equal(refdump_read_f32(r, refdump_find(r, "big"), got_big, &err), -1);
    assert_string_equal(err.msg, want);
    assert_int_equal(refdump_read_f32(r, t, got, &err), -1);
    assert_string_equal(err.msg, want);
    int32_t ids[3];
    assert_int_equal(refdump_read_i32(r, refdump_find(r, "prompt.tokens"), ids, &err), -1);
    assert_string_equal(err.msg, want);
    /* the bytes handed out stay readable: they are a copy */
    float v;
    memcpy(&v, (const uint8_t *)refdump_find(r, "big")->data + 4 * 8191, 4);
    assert_true(v == 5.0f);
    refdump_close(r);

    /* replaced by rename (same size, same bytes): another file all the same */
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(full, 1, size, f), size);
    fclose(f);
    r = refdump_open(path, &err);
    assert_non_null(r);
    snprintf(other, sizeof other, "%s.new", path);
    f = fopen(other, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(full, 1, size, f), size);
    fclose(f);
    assert_int_equal(rename(other, path), 0);
    assert_int_equal(refdump_read_f32(r, refdump_find(r, "blk.0.q"), got, &err), -1);
    assert_string_equal(err.msg, want);
    /* and gone */
    unlink(path);
    assert_int_equal(refdump_read_f32(r, refdump_find(r, "blk.0.q"), got, &err), -1);
    assert_string_equal(err.msg, want);
    refdump_close(r);
    free(full);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "refdump_open blocked on a FIFO\n";
    ssize_t k = write(2, m, sizeof m - 1);
    (void)k;
    _exit(1);
}

/* issue 14 item 15: a FIFO given as the file is refused at once (before:
 * open() waited for a writer forever) */
static void test_fifo(void **state)
{
    (void)state;
    char path[512], want[1200];
    tu_tmp_path(path, sizeof path, ".fifo");
    assert_int_equal(mkfifo(path, 0600), 0);
    signal(SIGALRM, on_alarm);
    alarm(10);
    xf_err err = {{0}};
    assert_null(refdump_open(path, &err));
    alarm(0);
    signal(SIGALRM, SIG_DFL);
    snprintf(want, sizeof want, "%s: not a regular file", path);
    assert_string_equal(err.msg, want);
    unlink(path);
}

/* ------------------------------------------------------------- writer */

static int tmp_leftovers(const char *path)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    assert_non_null(slash);
    *slash = '\0';
    const char *base = slash + 1;
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        n += len > blen + 4 && strncmp(e->d_name, base, blen) == 0 && e->d_name[blen] == '.' &&
             strcmp(e->d_name + len - 4, ".tmp") == 0;
    }
    closedir(d);
    return n;
}

static void save_fails(refdump_writer *w, const char *path, const char *why)
{
    char want[1200];
    xf_err err = {{0}};
    snprintf(want, sizeof want, "%s: %s", path, why);
    assert_int_equal(refdump_writer_save(w, path, &err), -1);
    assert_string_equal(err.msg, want);
}

static void test_writer_no_partial_file(void **state)
{
    (void)state;
    refdump_writer *w = refdump_writer_new();
    const int64_t s[] = {2};
    const float v[2] = {1, 2};
    add(w, "x", REFDUMP_F32, 1, s, v);
    xf_err err = {{0}};

    /* into a directory that does not exist: a clean error naming the path */
    char dir[512], path[700];
    tu_tmp_path(dir, sizeof dir, "-nodir");
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    save_fails(w, path, "cannot create a temporary file beside it: No such file or directory");
    assert_false(file_exists(path));

    /* the target is a directory: refused, nothing left, the target untouched */
    tu_tmp_path(dir, sizeof dir, "-isdir");
    assert_int_equal(mkdir(dir, 0755), 0);
    save_fails(w, dir, "not a regular file: refusing to replace it");
    assert_int_equal(tmp_leftovers(dir), 0);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    rmdir(dir);

    /* a failed write over a good file (here the file size limit, as a full
     * disk would) leaves the good file and no temporary */
    char good[512];
    tu_tmp_path(good, sizeof good, ".safetensors");
    assert_int_equal(refdump_writer_save(w, good, &err), 0);
    refdump_writer *w2 = refdump_writer_new();
    static float big[4096];
    const int64_t sb[] = {4096};
    add(w2, "other", REFDUMP_F32, 1, sb, big);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 1000;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = refdump_writer_save(w2, good, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_int_equal(rc, -1);
    char want[1200];
    snprintf(want, sizeof want, "%s: write failed: File too large", good);
    assert_string_equal(err.msg, want);
    assert_int_equal(tmp_leftovers(good), 0);
    refdump *r = refdump_open(good, &err);
    assert_non_null(r);
    assert_non_null(refdump_find(r, "x"));
    assert_null(refdump_find(r, "other"));
    refdump_close(r);
    unlink(good);
    refdump_writer_free(w2);
    refdump_writer_free(w);
}

/* issue 14 items 9/10: what sits at the target or at the old temporary name
 * is never written through or turned into a file */
static void test_writer_targets(void **state)
{
    (void)state;
    refdump_writer *w = refdump_writer_new();
    const int64_t s[] = {2};
    const float v[2] = {1, 2};
    add(w, "x", REFDUMP_F32, 1, s, v);
    xf_err err = {{0}};
    struct stat st;

    /* a device node: refused before anything is written (before: /dev/null.tmp
     * was written and renamed over /dev/null). A node of our own in a
     * temporary directory (root only: mknod), never one of /dev: that is
     * shared with whatever else runs on the machine. */
    char node[512], nodetmp[600];
    tu_tmp_path(node, sizeof node, ".chr");
    if (mknod(node, S_IFCHR | 0600, makedev(1, 3)) == 0) {
        save_fails(w, node, "not a regular file: refusing to replace it");
        assert_int_equal(lstat(node, &st), 0);
        assert_true(S_ISCHR(st.st_mode));
        snprintf(nodetmp, sizeof nodetmp, "%s.tmp", node);
        assert_int_equal(lstat(nodetmp, &st), -1);
        assert_int_equal(tmp_leftovers(node), 0);
        unlink(node);
    }
    /* a FIFO of ours stays one */
    char fifo[512];
    tu_tmp_path(fifo, sizeof fifo, ".fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    save_fails(w, fifo, "not a regular file: refusing to replace it");
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    unlink(fifo);

    /* a symlink planted at the old temporary name PATH.tmp: the file it
     * points to keeps its bytes, the link stays a link */
    char path[512], link[600], victim[512];
    tu_tmp_path(path, sizeof path, ".safetensors");
    tu_tmp_path(victim, sizeof victim, ".victim");
    FILE *f = fopen(victim, "wb");
    assert_non_null(f);
    fputs("precious", f);
    fclose(f);
    snprintf(link, sizeof link, "%s.tmp", path);
    assert_int_equal(symlink(victim, link), 0);
    assert_int_equal(refdump_writer_save(w, path, &err), 0);
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(stat(victim, &st), 0);
    assert_int_equal(st.st_size, 8);
    refdump *r = refdump_open(path, &err);
    assert_non_null(r);
    refdump_close(r);
    /* a symlink as the target: refused, the link and its file untouched */
    unlink(path);
    assert_int_equal(symlink(victim, path), 0);
    save_fails(w, path, "is a symbolic link: refusing to replace it (name the file it points to)");
    assert_int_equal(stat(victim, &st), 0);
    assert_int_equal(st.st_size, 8);
    unlink(path);
    unlink(link);
    unlink(victim);

    /* the mode of a file replaced is kept; a new one is 0666 less the umask,
     * as fopen makes it (xfile's rule for every file xfdb writes) */
    assert_int_equal(refdump_writer_save(w, path, &err), 0);
    mode_t mask = umask(022);
    umask(mask);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0666 & ~mask);
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(refdump_writer_save(w, path, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    /* a read-only file says "do not change me": refused, as rename(2)
     * would replace it all the same */
    assert_int_equal(chmod(path, 0444), 0);
    save_fails(w, path, "read-only (mode 0444): refusing to replace it");
    assert_int_equal(tmp_leftovers(path), 0);
    unlink(path);

    /* a directory where no temporary can be made: read-only to us, or
     * /proc for root (who ignores the mode) */
    char dir[512], in[700];
    tu_tmp_path(dir, sizeof dir, "-ro");
    assert_int_equal(mkdir(dir, 0555), 0);
    snprintf(in, sizeof in, "%s/out.safetensors", dir);
    if (geteuid() != 0)
        save_fails(w, in, "cannot create a temporary file beside it: Permission denied");
    else
        save_fails(w, "/proc/xfdb-out.safetensors",
                   "cannot create a temporary file beside it: No such file or directory");
    assert_false(file_exists(in));
    rmdir(dir);
    refdump_writer_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_changed),
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_writer_no_partial_file),
        cmocka_unit_test(test_writer_targets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
