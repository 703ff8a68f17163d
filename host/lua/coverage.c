/*
 * Line coverage (see coverage.h). Counting: the hook's line event looks up the running
 * chunk's source in a small table keyed by the source string's address (checked by
 * content, since a collected chunk's address can be reused), so a line costs one getinfo
 * and a compare. Code lines: Lua 5.4's public API gives the lines of a function value only
 * (debug.getinfo "L"), and functions a run never created have no value; the compiled chunk
 * (lua_dump) holds every nested function's line table, so the report reads that.
 */
#include "lua/coverage.h"

#include "common/error.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct cov_file {
    char *source;     /* the chunk name as Lua gives it ("@scripts/main.lua") */
    const char *addr; /* where Lua keeps that string (a hint, checked by content) */
    char *path;       /* resolved; NULL when the file is not counted */
    uint32_t *hits;   /* hits[line] */
    size_t nhits;
} cov_file_t;

static struct {
    int on;
    char *root; /* resolved, no trailing slash */
    cov_file_t *files;
    size_t nfiles, cap;
    cov_file_t *last;
} cov;

int luar_coverage_on(void)
{
    return cov.on;
}

int luar_coverage_start(const char *root)
{
    char *r = realpath(root, NULL);
    if (r == NULL)
        return errno == ENOMEM ? LUAR_ENOMEM : LUAR_ENOTFOUND;
    luar_coverage_stop();
    cov.root = r;
    cov.on = 1;
    return 0;
}

void luar_coverage_stop(void)
{
    for (size_t i = 0; i < cov.nfiles; i++) {
        free(cov.files[i].source);
        free(cov.files[i].path);
        free(cov.files[i].hits);
    }
    free(cov.files);
    free(cov.root);
    memset(&cov, 0, sizeof cov);
}

/* A spec, or anything under a spec/ folder below the root: not counted. */
static int is_spec(const char *rel)
{
    size_t n = strlen(rel);
    if (n >= 9 && strcmp(rel + n - 9, "_spec.lua") == 0)
        return 1;
    return strncmp(rel, "spec/", 5) == 0 || strstr(rel, "/spec/") != NULL;
}

/* The resolved path of a counted file, or NULL (outside the root, a spec, not a file). */
static char *counted_path(const char *source)
{
    if (source[0] != '@')
        return NULL;
    char *p = realpath(source + 1, NULL);
    size_t n = strlen(cov.root);
    if (p == NULL || strncmp(p, cov.root, n) != 0 || p[n] != '/' || is_spec(p + n + 1)) {
        free(p);
        return NULL;
    }
    return p;
}

static cov_file_t *file_for(const char *source)
{
    if (cov.last != NULL && cov.last->addr == source && strcmp(cov.last->source, source) == 0)
        return cov.last;
    for (size_t i = 0; i < cov.nfiles; i++) {
        if (strcmp(cov.files[i].source, source) == 0) {
            cov.files[i].addr = source;
            return cov.last = &cov.files[i];
        }
    }
    if (cov.nfiles == cov.cap) {
        size_t cap = cov.cap ? cov.cap * 2 : 16;
        cov_file_t *f = realloc(cov.files, cap * sizeof *f);
        if (f == NULL)
            return NULL;
        cov.files = f;
        cov.cap = cap;
    }
    cov_file_t *f = &cov.files[cov.nfiles];
    memset(f, 0, sizeof *f);
    f->source = strdup(source);
    if (f->source == NULL)
        return NULL;
    f->addr = source;
    f->path = counted_path(source);
    cov.nfiles++;
    return cov.last = f;
}

void luar_coverage_line(lua_State *L, lua_Debug *ar)
{
    if (!cov.on || !lua_getinfo(L, "S", ar) || ar->currentline <= 0)
        return;
    cov_file_t *f = file_for(ar->source);
    if (f == NULL || f->path == NULL)
        return;
    size_t line = (size_t)ar->currentline;
    if (line >= f->nhits) {
        size_t n = f->nhits ? f->nhits : 64;
        while (n <= line)
            n *= 2;
        uint32_t *h = realloc(f->hits, n * sizeof *h);
        if (h == NULL)
            return;
        memset(h + f->nhits, 0, (n - f->nhits) * sizeof *h);
        f->hits = h;
        f->nhits = n;
    }
    if (f->hits[line] < UINT32_MAX)
        f->hits[line]++;
}

/* ---- code lines from a compiled chunk (Lua 5.4's ldump.c format) ---- */

typedef struct reader {
    const unsigned char *p, *end;
    int bad;
    unsigned isize, intsize, numsize;
} reader_t;

static unsigned rd_byte(reader_t *r)
{
    if (r->p >= r->end) {
        r->bad = 1;
        return 0;
    }
    return *r->p++;
}

static void rd_skip(reader_t *r, size_t n)
{
    if ((size_t)(r->end - r->p) < n) {
        r->bad = 1;
        r->p = r->end;
    } else {
        r->p += n;
    }
}

/* dumpSize: 7 bits a byte, most significant first, the last byte flagged with 0x80. */
static size_t rd_size(reader_t *r)
{
    size_t x = 0;
    for (int i = 0; i < 10 && !r->bad; i++) {
        unsigned b = rd_byte(r);
        x = (x << 7) | (b & 0x7f);
        if (b & 0x80)
            return x;
    }
    r->bad = 1;
    return 0;
}

static void rd_string(reader_t *r)
{
    size_t n = rd_size(r);
    if (n > 0)
        rd_skip(r, n - 1);
}

#define ABSLINEINFO (-0x80)

static void mark(unsigned char *code, size_t ncode, long line)
{
    if (line > 0 && (size_t)line < ncode)
        code[line] = 1;
}

static void rd_function(reader_t *r, unsigned char *code, size_t ncode, int depth)
{
    if (depth > 200) {
        r->bad = 1;
        return;
    }
    rd_string(r); /* source */
    long line = (long)rd_size(r);
    rd_size(r); /* lastlinedefined */
    rd_byte(r); /* numparams */
    int vararg = (int)rd_byte(r);
    rd_byte(r);  /* maxstacksize */
    size_t n = rd_size(r);
    if (n > (size_t)(r->end - r->p) / (r->isize ? r->isize : 1)) {
        r->bad = 1;
        return;
    }
    rd_skip(r, n * r->isize); /* code */
    n = rd_size(r);           /* constants */
    for (size_t i = 0; i < n && !r->bad; i++) {
        unsigned tag = rd_byte(r);
        if (tag == 3) /* integer */
            rd_skip(r, r->intsize);
        else if (tag == 19) /* float */
            rd_skip(r, r->numsize);
        else if (tag == 4 || tag == 20) /* short and long strings */
            rd_string(r);
        else if (tag != 0 && tag != 1 && tag != 17) /* nil, false, true */
            r->bad = 1;
    }
    n = rd_size(r); /* upvalues: instack, idx, kind */
    if (n > (size_t)(r->end - r->p)) {
        r->bad = 1;
        return;
    }
    rd_skip(r, n * 3);
    n = rd_size(r); /* nested functions */
    for (size_t i = 0; i < n && !r->bad; i++)
        rd_function(r, code, ncode, depth + 1);
    size_t nline = rd_size(r); /* line deltas, one per instruction */
    const unsigned char *delta = r->p;
    rd_skip(r, nline);
    size_t nabs = rd_size(r); /* absolute lines: (pc, line) pairs */
    if (r->bad || nabs > (size_t)(r->end - r->p)) {
        r->bad = 1;
        return;
    }
    const unsigned char *absinfo = r->p;
    for (size_t i = 0; i < nabs && !r->bad; i++) {
        rd_size(r);
        rd_size(r);
    }
    if (r->bad)
        return;
    /* As ldebug.c's collectvalidlines: a vararg function's first instruction (VARARGPREP)
     * moves the line without making it a line of code. */
    reader_t ar = *r;
    ar.p = absinfo;
    size_t ai = 0;
    for (size_t pc = 0; pc < nline; pc++) {
        signed char d = (signed char)delta[pc];
        if (d != ABSLINEINFO) {
            line += d;
        } else {
            /* the pair recorded for this pc (pairs are in pc order) */
            while (ai < nabs) {
                size_t apc = rd_size(&ar);
                size_t aline = rd_size(&ar);
                ai++;
                if (apc == pc) {
                    line = (long)aline;
                    break;
                }
            }
        }
        if (pc > 0 || !vararg)
            mark(code, ncode, line);
    }
    n = rd_size(r); /* local variables: name, startpc, endpc */
    for (size_t i = 0; i < n && !r->bad; i++) {
        rd_string(r);
        rd_size(r);
        rd_size(r);
    }
    n = rd_size(r); /* upvalue names */
    for (size_t i = 0; i < n && !r->bad; i++)
        rd_string(r);
}

int luar_coverage_code_lines(const unsigned char *dump, size_t len, unsigned char *code,
                             size_t ncode)
{
    /* signature, version 5.4, format 0, LUAC_DATA, then the sizes it was built with */
    static const unsigned char head[] = {0x1b, 'L', 'u', 'a', 0x54, 0,
                                         0x19, 0x93, '\r', '\n', 0x1a, '\n'};
    reader_t r = {dump, dump + len, 0, 0, 0, 0};
    if (len < sizeof head + 3 || memcmp(dump, head, sizeof head) != 0)
        return LUAR_EINVAL;
    rd_skip(&r, sizeof head);
    r.isize = rd_byte(&r);
    r.intsize = rd_byte(&r);
    r.numsize = rd_byte(&r);
    rd_skip(&r, r.intsize + r.numsize); /* LUAC_INT, LUAC_NUM */
    rd_byte(&r);                        /* the main closure's upvalue count */
    rd_function(&r, code, ncode, 0);
    return r.bad ? LUAR_EINVAL : 0;
}

/* ---- the report ---- */

typedef struct source_file {
    char *path;
    char *text;
    size_t len;
    size_t nlines;
    unsigned char *code; /* code[line] */
    const cov_file_t *counts;
    size_t hit, missed;
} source_file_t;

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    (void)L;
    return luar_buf_append(ud, p, sz) == 0 ? 0 : 1;
}

static int read_file(const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return LUAR_EIO;
    luar_buf_t b;
    luar_buf_init(&b, 0);
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = luar_buf_append(&b, chunk, n);
    if (ferror(f))
        rc = LUAR_EIO;
    fclose(f);
    if (rc == 0 && luar_buf_append(&b, "", 1) == 0) {
        *len = b.len - 1;
        *text = b.data;
        return 0;
    }
    luar_buf_free(&b);
    return rc ? rc : LUAR_ENOMEM;
}

/* Reads, compiles and measures one file. A file that does not compile is an error. */
static int measure(lua_State *L, source_file_t *sf, luar_buf_t *err)
{
    int rc = read_file(sf->path, &sf->text, &sf->len);
    if (rc) {
        luar_buf_appendf(err, "coverage: cannot read %s\n", sf->path);
        return rc;
    }
    sf->nlines = 1;
    for (size_t i = 0; i < sf->len; i++)
        sf->nlines += sf->text[i] == '\n';
    sf->code = calloc(sf->nlines + 2, 1);
    if (sf->code == NULL)
        return LUAR_ENOMEM;
    char name[PATH_MAX + 2];
    snprintf(name, sizeof name, "@%s", sf->path);
    if (luaL_loadbuffer(L, sf->text, sf->len, name) != LUA_OK) {
        luar_buf_appendf(err, "coverage: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return LUAR_EINVAL;
    }
    luar_buf_t dump;
    luar_buf_init(&dump, 0);
    rc = lua_dump(L, dump_writer, &dump, 0) != 0 ? LUAR_ENOMEM : 0;
    lua_pop(L, 1);
    if (rc == 0)
        rc = luar_coverage_code_lines((const unsigned char *)dump.data, dump.len, sf->code,
                                      sf->nlines + 1);
    luar_buf_free(&dump);
    if (rc) {
        luar_buf_appendf(err, "coverage: cannot read the compiled chunk of %s\n", sf->path);
        return rc;
    }
    for (size_t i = 0; i < cov.nfiles; i++)
        if (cov.files[i].path != NULL && strcmp(cov.files[i].path, sf->path) == 0)
            sf->counts = &cov.files[i];
    for (size_t line = 1; line <= sf->nlines; line++) {
        if (!sf->code[line])
            continue;
        const cov_file_t *c = sf->counts;
        if (c != NULL && line < c->nhits && c->hits[line] > 0)
            sf->hit++;
        else
            sf->missed++;
    }
    return 0;
}

typedef struct file_list {
    char **paths;
    size_t n, cap;
} file_list_t;

/* Every counted *.lua below `dir` (sorted by the caller). Depth-bounded. */
static int walk(const char *dir, file_list_t *out, int depth)
{
    if (depth > 32)
        return 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return LUAR_EIO;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        size_t n = strlen(e->d_name);
        if (S_ISDIR(st.st_mode)) {
            rc = walk(path, out, depth + 1);
        } else if (S_ISREG(st.st_mode) && n > 4 && strcmp(e->d_name + n - 4, ".lua") == 0 &&
                   !is_spec(path + strlen(cov.root) + 1)) {
            if (out->n == out->cap) {
                size_t cap = out->cap ? out->cap * 2 : 32;
                char **p = realloc(out->paths, cap * sizeof *p);
                if (p == NULL) {
                    rc = LUAR_ENOMEM;
                    break;
                }
                out->paths = p;
                out->cap = cap;
            }
            if ((out->paths[out->n] = strdup(path)) == NULL)
                rc = LUAR_ENOMEM;
            else
                out->n++;
        }
    }
    closedir(d);
    return rc;
}

static int by_path(const void *a, const void *b)
{
    return strcmp(((const source_file_t *)a)->path, ((const source_file_t *)b)->path);
}

static void write_report(FILE *f, source_file_t *files, size_t n, size_t hit, size_t missed)
{
    size_t skip = strlen(cov.root) + 1;
    fprintf(f, "Coverage of %s\n\n%-40s %6s %6s %8s  %s\n", cov.root, "File", "Hits", "Missed",
            "Coverage", "Missed lines");
    for (size_t i = 0; i < n; i++) {
        source_file_t *sf = &files[i];
        size_t total = sf->hit + sf->missed;
        fprintf(f, "%-40s %6zu %6zu %7.2f%%  ", sf->path + skip, sf->hit, sf->missed,
                total ? 100.0 * (double)sf->hit / (double)total : 100.0);
        const char *sep = "";
        for (size_t line = 1; line <= sf->nlines; line++) {
            const cov_file_t *c = sf->counts;
            if (sf->code[line] && !(c != NULL && line < c->nhits && c->hits[line] > 0)) {
                fprintf(f, "%s%zu", sep, line);
                sep = ", ";
            }
        }
        fputc('\n', f);
    }
    fprintf(f, "%-40s %6zu %6zu %7.2f%%\n", "Total", hit, missed,
            hit + missed ? 100.0 * (double)hit / (double)(hit + missed) : 100.0);
    for (size_t i = 0; i < n; i++) {
        source_file_t *sf = &files[i];
        fprintf(f, "\n%s\n%s\n", "==============================================================",
                sf->path + skip);
        const char *p = sf->text, *end = sf->text + sf->len;
        for (size_t line = 1; p < end || line == 1; line++) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
            const cov_file_t *c = sf->counts;
            uint32_t hits = c != NULL && line < c->nhits ? c->hits[line] : 0;
            if (!sf->code[line])
                fprintf(f, "%8s %.*s\n", "", (int)len, p);
            else if (hits == 0)
                fprintf(f, "%8s %.*s\n", "***0", (int)len, p);
            else
                fprintf(f, "%8u %.*s\n", hits, (int)len, p);
            if (nl == NULL)
                break;
            p = nl + 1;
        }
    }
}

int luar_coverage_report(const char *path, double *percent, luar_buf_t *err)
{
    *percent = 100;
    if (cov.root == NULL)
        return LUAR_EINVAL;
    file_list_t list = {0};
    int rc = walk(cov.root, &list, 0);
    source_file_t *files = calloc(list.n ? list.n : 1, sizeof *files);
    lua_State *L = luaL_newstate();
    if (rc == 0 && (files == NULL || L == NULL))
        rc = LUAR_ENOMEM;
    if (rc == LUAR_EIO)
        luar_buf_appendf(err, "coverage: cannot list %s\n", cov.root);
    size_t hit = 0, missed = 0;
    for (size_t i = 0; rc == 0 && i < list.n; i++) {
        files[i].path = list.paths[i];
        list.paths[i] = NULL;
        rc = measure(L, &files[i], err);
        hit += files[i].hit;
        missed += files[i].missed;
    }
    if (rc == 0) {
        qsort(files, list.n, sizeof *files, by_path);
        FILE *f = fopen(path, "w");
        if (f == NULL) {
            luar_buf_appendf(err, "coverage: cannot write %s: %s\n", path, strerror(errno));
            rc = LUAR_EIO;
        } else {
            write_report(f, files, list.n, hit, missed);
            if (fclose(f) != 0) {
                luar_buf_appendf(err, "coverage: cannot write %s\n", path);
                rc = LUAR_EIO;
            }
        }
        if (hit + missed > 0)
            *percent = 100.0 * (double)hit / (double)(hit + missed);
    }
    for (size_t i = 0; i < list.n; i++) {
        free(list.paths[i]);
        if (files != NULL) {
            free(files[i].path);
            free(files[i].text);
            free(files[i].code);
        }
    }
    free(list.paths);
    free(files);
    if (L != NULL)
        lua_close(L);
    return rc;
}
