/*
 * `luar secrets set|get|list|delete|rotate-key|gen-key` and `luar audit verify`.
 *
 * Changes to the store are read-modify-write of one encrypted file, so they hold an
 * exclusive flock on "<file>.lock" from the read to the rename: two concurrent `set`s both
 * land. Every change, and every `get` (it reveals a value), is first recorded in the audit
 * log with the secret's name and never its value; when the record cannot be written the
 * command refuses (nothing unaudited happens), and a change that then fails is recorded as
 * failed.
 */
#include "cli/secrets_cmd.h"
#include "audit/audit.h"
#include "common/error.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "secrets/store.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

typedef struct opts {
    luar_config_flags_t flags;
    int npos;
    char **pos;
} opts_t;

static const char secrets_usage[] =
    "usage: luar secrets <command> [--config F] [--data DIR]\n"
    "  set NAME [VALUE]   store a secret (VALUE from stdin when not given; put -- before\n"
    "                     a VALUE that starts with --)\n"
    "  get NAME           print a secret's value\n"
    "  list               print the names of the secrets\n"
    "  delete NAME        remove a secret\n"
    "  rotate-key         re-encrypt the store under LUAR_SECRETS_NEW_KEY\n"
    "  gen-key            print a new random key (64 hex digits)\n"
    "The key comes from LUAR_SECRETS_KEY (or secrets.key in the configuration).\n";

/* Splits --config / --data (with "=" or a separate value) from positional arguments. */
static int parse(int argc, char **argv, const char *cmd, opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->pos = calloc((size_t)argc + 1, sizeof *o->pos);
    int options = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        size_t n = 0;
        if (options && strcmp(a, "--") == 0) {
            options = 0; /* what follows is positional, e.g. a VALUE starting with "--" */
            continue;
        }
        if (!options) {
            o->pos[o->npos++] = argv[i];
            continue;
        }
        if (strncmp(a, "--config", 8) == 0 && (a[8] == '\0' || a[8] == '=')) {
            slot = &o->flags.config;
            n = 8;
        } else if (strncmp(a, "--data", 6) == 0 && (a[6] == '\0' || a[6] == '=')) {
            slot = &o->flags.data;
            n = 6;
        } else if (strncmp(a, "--", 2) == 0 && a[2] != '\0') {
            fprintf(stderr, "luar %s: unknown option %s\n", cmd, a);
            return 2;
        }
        if (slot == NULL) {
            o->pos[o->npos++] = argv[i];
        } else if (a[n] == '=') {
            *slot = a + n + 1;
        } else if (i + 1 < argc) {
            *slot = argv[++i];
        } else {
            fprintf(stderr, "luar %s: %s needs a value\n", cmd, a);
            return 2;
        }
    }
    return 0;
}

static int load_config(const opts_t *o, luar_config_t *cfg)
{
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int rc = luar_config_load(cfg, &o->flags, &err);
    if (rc)
        fprintf(stderr, "%s", err.data ? err.data : "configuration error\n");
    luar_buf_free(&err);
    return rc ? 2 : 0;
}

/* Maps a store error to an exit status: a key problem is configuration (2), else 1. */
static int store_status(int rc)
{
    return rc == LUAR_ECONFIG ? 2 : 1;
}

/* Holds an exclusive lock on "<file>.lock" for a read-modify-write; -1 on failure. */
static int lock_store(const char *file)
{
    luar_buf_t path;
    luar_buf_init(&path, 0);
    luar_buf_appendf(&path, "%s.lock", file);
    int fd = open(path.data, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        fprintf(stderr, "luar secrets: cannot open the lock file %s: %s\n", path.data,
                strerror(errno));
    while (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        if (errno == EINTR)
            continue;
        fprintf(stderr, "luar secrets: cannot lock %s: %s\n", path.data, strerror(errno));
        close(fd);
        fd = -1;
    }
    luar_buf_free(&path);
    return fd;
}

/* Appends `"key":"value"` (JSON-escaped) to an audit field list. */
static void add_field(luar_buf_t *f, const char *key, const char *value)
{
    if (f->len > 0)
        luar_buf_putc(f, ',');
    luar_buf_append_json_string(f, key, strlen(key));
    luar_buf_putc(f, ':');
    luar_buf_append_json_string(f, value, strlen(value));
}

/* The fields every CLI record carries: the OS user (and the sudo caller) and the pid. */
static void add_identity(luar_buf_t *f)
{
    struct passwd *pw = getpwuid(geteuid());
    char uid[32];
    snprintf(uid, sizeof uid, "%u", (unsigned)geteuid());
    add_field(f, "user", pw && pw->pw_name ? pw->pw_name : uid);
    const char *sudo = getenv("SUDO_USER");
    if (sudo && *sudo)
        add_field(f, "sudo_user", sudo);
    luar_buf_appendf(f, ",\"pid\":%d", (int)getpid());
}

/* Records `action` with `fields`; prints why and returns 1 when it could not. */
static int audit(const luar_config_t *cfg, const char *action, luar_buf_t *fields)
{
    luar_buf_t err;
    luar_buf_init(&err, 0);
    add_identity(fields);
    int rc = luar_audit_append_to(cfg->audit_file, "cli", action, fields->data, fields->len, &err);
    if (rc != 0)
        fprintf(stderr, "luar secrets: refused: the audit record could not be written (%s)\n",
                err.data ? err.data : luar_strerror(rc));
    luar_buf_free(&err);
    return rc ? 1 : 0;
}

/* Says there is no key and how to make one; returns 2. */
static int need_key(const char *cmd)
{
    fprintf(stderr,
            "luar secrets %s: no key: set LUAR_SECRETS_KEY (or secrets.key in the "
            "configuration); `luar secrets gen-key` makes one\n",
            cmd);
    return 2;
}

/*
 * Reads the value of a `set` from stdin: hidden line input on a terminal, else all of it
 * with one trailing newline removed (what `echo` and most editors add).
 */
static int read_value(const char *name, luar_buf_t *value)
{
    char chunk[4096];
    if (isatty(STDIN_FILENO)) {
        struct termios saved, quiet;
        int hidden = tcgetattr(STDIN_FILENO, &saved) == 0;
        fprintf(stderr, "Value for %s (input hidden): ", name);
        fflush(stderr);
        if (hidden) {
            quiet = saved;
            quiet.c_lflag &= ~(tcflag_t)ECHO;
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        }
        char *got = fgets(chunk, sizeof chunk, stdin);
        if (hidden)
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        fputc('\n', stderr);
        if (got)
            luar_buf_puts(value, chunk);
        OPENSSL_cleanse(chunk, sizeof chunk);
    } else {
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
            if (luar_buf_append(value, chunk, n) != 0) {
                OPENSSL_cleanse(chunk, sizeof chunk);
                fprintf(stderr, "luar secrets set: the value is longer than %u bytes\n",
                        LUAR_SECRET_VALUE_MAX);
                return 2;
            }
        }
        OPENSSL_cleanse(chunk, sizeof chunk);
    }
    if (value->len > 0 && value->data[value->len - 1] == '\n')
        value->len--;
    if (value->len > 0 && value->data[value->len - 1] == '\r')
        value->len--;
    return 0;
}

static int cmd_gen_key(void)
{
    uint8_t key[LUAR_AEAD_KEY_LEN];
    luar_buf_t hex;
    luar_buf_init(&hex, 0);
    if (luar_crypto_random(key, sizeof key) != 0) {
        fprintf(stderr, "luar secrets gen-key: no random bytes available\n");
        return 1;
    }
    luar_hex_encode(&hex, key, sizeof key);
    printf("%s\n", hex.data);
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(hex.data, hex.len);
    luar_buf_free(&hex);
    return 0;
}

/* Reads the store for a command; prints the error and returns its exit status. */
static int read_store(const luar_config_t *cfg, const luar_secrets_key_t *key,
                      luar_secret_store_t **s, int *exists)
{
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int rc = luar_secret_store_read(cfg->secrets_file, key, s, exists, &err);
    if (rc != 0)
        fprintf(stderr, "luar secrets: %s\n", err.data ? err.data : luar_strerror(rc));
    luar_buf_free(&err);
    return rc ? store_status(rc) : 0;
}

/* Writes the store; on failure records the failed `action` and returns 1. */
static int write_store(const luar_config_t *cfg, const luar_secret_store_t *s,
                       const luar_secrets_key_t *key, const char *action, const char *name)
{
    luar_buf_t err;
    luar_buf_init(&err, 0);
    int rc = luar_secret_store_write(s, cfg->secrets_file, key, &err);
    if (rc != 0) {
        fprintf(stderr, "luar secrets: %s; the store is unchanged\n",
                err.data ? err.data : luar_strerror(rc));
        luar_buf_t f;
        luar_buf_init(&f, 0);
        if (name)
            add_field(&f, "name", name);
        add_field(&f, "outcome", "failed");
        add_field(&f, "error", err.data ? err.data : luar_strerror(rc));
        audit(cfg, action, &f);
        luar_buf_free(&f);
    }
    luar_buf_free(&err);
    return rc ? 1 : 0;
}

static int cmd_set(const luar_config_t *cfg, int npos, char **pos)
{
    luar_secret_store_t *s = NULL;
    luar_buf_t value, f;
    int status, existed = 0, lock = -1;
    char id[2 * LUAR_AEAD_ID_LEN + 1];
    if (npos < 2 || npos > 3) {
        fprintf(stderr, "usage: luar secrets set NAME [VALUE]   (VALUE from stdin when not "
                        "given)\n");
        return 2;
    }
    const char *name = pos[1];
    if (!luar_secret_name_valid(name)) {
        fprintf(stderr,
                "luar secrets set: invalid name \"%s\": use 1 to %d letters, digits, "
                "'_', '.', '-' or '/', not starting with '.', '-' or '/'\n",
                name, LUAR_SECRET_NAME_MAX);
        return 2;
    }
    if (!cfg->secrets_key.set)
        return need_key("set");
    luar_buf_init(&value, LUAR_SECRET_VALUE_MAX + 2);
    luar_buf_init(&f, 0);
    if (npos == 3 && luar_buf_puts(&value, pos[2]) != 0) {
        fprintf(stderr, "luar secrets set: the value is longer than %u bytes\n",
                LUAR_SECRET_VALUE_MAX);
        status = 2;
    } else if (npos == 3) {
        status = 0;
    } else {
        status = read_value(name, &value);
    }
    if (status == 0 && value.len == 0) {
        fprintf(stderr,
                "luar secrets set: empty value for %s (use `luar secrets delete %s` to "
                "remove a secret)\n",
                name, name);
        status = 2;
    }
    if (status == 0 && value.len > LUAR_SECRET_VALUE_MAX) {
        fprintf(stderr, "luar secrets set: the value is longer than %u bytes\n",
                LUAR_SECRET_VALUE_MAX);
        status = 2;
    }
    if (status != 0)
        goto done;
    lock = lock_store(cfg->secrets_file);
    status = lock < 0 ? 1 : read_store(cfg, &cfg->secrets_key, &s, NULL);
    if (status != 0)
        goto done;
    existed = luar_secret_store_get(s, name, &(size_t){0}) != NULL;
    luar_aead_key_id(cfg->secrets_key.bytes, id);
    add_field(&f, "name", name);
    luar_buf_appendf(&f, ",\"existed\":%s", existed ? "true" : "false");
    add_field(&f, "key_id", id);
    status = audit(cfg, "secret.set", &f);
    if (status != 0)
        goto done;
    if (luar_secret_store_set(s, name, value.data, value.len, NULL) != 0) {
        fprintf(stderr, "luar secrets set: out of memory\n");
        status = 1;
        goto done;
    }
    status = write_store(cfg, s, &cfg->secrets_key, "secret.set", name);
    if (status == 0)
        printf("%s %s in %s (%zu secret%s)\n", existed ? "updated" : "added", name,
               cfg->secrets_file, luar_secret_store_count(s),
               luar_secret_store_count(s) == 1 ? "" : "s");
done:
    if (lock >= 0)
        close(lock);
    if (value.data)
        OPENSSL_cleanse(value.data, value.cap);
    luar_buf_free(&value);
    luar_buf_free(&f);
    luar_secret_store_free(s);
    return status;
}

static int cmd_get(const luar_config_t *cfg, int npos, char **pos)
{
    luar_secret_store_t *s = NULL;
    luar_buf_t f;
    size_t len = 0;
    if (npos != 2) {
        fprintf(stderr, "usage: luar secrets get NAME\n");
        return 2;
    }
    if (!cfg->secrets_key.set)
        return need_key("get");
    int exists = 0, status = read_store(cfg, &cfg->secrets_key, &s, &exists);
    if (status != 0)
        return status;
    const char *value = luar_secret_store_get(s, pos[1], &len);
    if (value == NULL) {
        fprintf(stderr, "luar secrets get: no secret %s in %s%s\n", pos[1], cfg->secrets_file,
                exists ? "" : " (the file does not exist)");
        luar_secret_store_free(s);
        return 1;
    }
    luar_buf_init(&f, 0);
    add_field(&f, "name", pos[1]);
    status = audit(cfg, "secret.get", &f);
    luar_buf_free(&f);
    if (status == 0) {
        fwrite(value, 1, len, stdout);
        fputc('\n', stdout);
    }
    luar_secret_store_free(s);
    return status;
}

static int cmd_list(const luar_config_t *cfg, int npos)
{
    luar_secret_store_t *s = NULL;
    if (npos != 1) {
        fprintf(stderr, "usage: luar secrets list\n");
        return 2;
    }
    if (!cfg->secrets_key.set)
        return need_key("list");
    int exists = 0, status = read_store(cfg, &cfg->secrets_key, &s, &exists);
    if (status == 0 && !exists)
        fprintf(stderr, "luar secrets list: no secrets file at %s yet\n", cfg->secrets_file);
    for (size_t i = 0; status == 0 && i < luar_secret_store_count(s); i++)
        printf("%s\n", luar_secret_store_at(s, i, NULL, NULL));
    luar_secret_store_free(s);
    return status;
}

static int cmd_delete(const luar_config_t *cfg, int npos, char **pos)
{
    luar_secret_store_t *s = NULL;
    luar_buf_t f;
    if (npos != 2) {
        fprintf(stderr, "usage: luar secrets delete NAME\n");
        return 2;
    }
    if (!cfg->secrets_key.set)
        return need_key("delete");
    int lock = lock_store(cfg->secrets_file);
    int status = lock < 0 ? 1 : read_store(cfg, &cfg->secrets_key, &s, NULL);
    luar_buf_init(&f, 0);
    if (status == 0 && luar_secret_store_get(s, pos[1], &(size_t){0}) == NULL) {
        fprintf(stderr, "luar secrets delete: no secret %s in %s\n", pos[1], cfg->secrets_file);
        status = 1;
    }
    if (status == 0) {
        add_field(&f, "name", pos[1]);
        status = audit(cfg, "secret.delete", &f);
    }
    if (status == 0) {
        luar_secret_store_delete(s, pos[1]);
        status = write_store(cfg, s, &cfg->secrets_key, "secret.delete", pos[1]);
    }
    if (status == 0)
        printf("deleted %s from %s\n", pos[1], cfg->secrets_file);
    if (lock >= 0)
        close(lock);
    luar_buf_free(&f);
    luar_secret_store_free(s);
    return status;
}

static int cmd_rotate_key(const luar_config_t *cfg, int npos)
{
    luar_secret_store_t *s = NULL, *check = NULL;
    luar_secrets_key_t next = {.from = "LUAR_SECRETS_NEW_KEY"};
    luar_buf_t err, f;
    char old_id[2 * LUAR_AEAD_ID_LEN + 1], new_id[2 * LUAR_AEAD_ID_LEN + 1];
    int exists = 0, status, lock = -1;
    if (npos != 1) {
        fprintf(stderr, "usage: LUAR_SECRETS_NEW_KEY=<new key> luar secrets rotate-key\n");
        return 2;
    }
    if (!cfg->secrets_key.set)
        return need_key("rotate-key");
    const char *text = getenv("LUAR_SECRETS_NEW_KEY");
    luar_buf_init(&err, 0);
    luar_buf_init(&f, 0);
    if (text == NULL || *text == '\0') {
        fprintf(stderr, "luar secrets rotate-key: LUAR_SECRETS_NEW_KEY is not set: put the new "
                        "key there (`luar secrets gen-key` makes one)\n");
        status = 2;
        goto done;
    }
    if (luar_secrets_parse_key(text, next.bytes, &err) != 0) {
        fprintf(stderr, "LUAR_SECRETS_NEW_KEY: %s\n", err.data);
        status = 2;
        goto done;
    }
    next.set = 1;
    luar_aead_key_id(cfg->secrets_key.bytes, old_id);
    luar_aead_key_id(next.bytes, new_id);
    if (CRYPTO_memcmp(next.bytes, cfg->secrets_key.bytes, LUAR_AEAD_KEY_LEN) == 0) {
        fprintf(stderr,
                "luar secrets rotate-key: LUAR_SECRETS_NEW_KEY is the current key "
                "(key id %s)\n",
                old_id);
        status = 2;
        goto done;
    }
    lock = lock_store(cfg->secrets_file);
    status = lock < 0 ? 1 : read_store(cfg, &cfg->secrets_key, &s, &exists);
    if (status != 0)
        goto done;
    if (!exists) {
        fprintf(stderr, "luar secrets rotate-key: %s does not exist: nothing to re-encrypt\n",
                cfg->secrets_file);
        status = 1;
        goto done;
    }
    add_field(&f, "from_key_id", old_id);
    add_field(&f, "to_key_id", new_id);
    luar_buf_appendf(&f, ",\"secrets\":%zu", luar_secret_store_count(s));
    status = audit(cfg, "secrets.rotate_key", &f);
    if (status == 0)
        status = write_store(cfg, s, &next, "secrets.rotate_key", NULL);
    if (status != 0)
        goto done;
    /* Read it back with the new key before telling anyone to switch to it. */
    luar_buf_reset(&err);
    if (luar_secret_store_read(cfg->secrets_file, &next, &check, NULL, &err) != 0 ||
        luar_secret_store_count(check) != luar_secret_store_count(s)) {
        fprintf(stderr,
                "luar secrets rotate-key: the re-encrypted file does not read back: "
                "%s\n",
                err.data ? err.data : "count differs");
        status = 1;
        goto done;
    }
    printf("re-encrypted %zu secret%s in %s under key id %s (was %s).\n"
           "Now set LUAR_SECRETS_KEY to the new key wherever luar runs and restart it: "
           "the old key no longer opens the file (`luar reload` keeps the key it started "
           "with).\n",
           luar_secret_store_count(s), luar_secret_store_count(s) == 1 ? "" : "s",
           cfg->secrets_file, new_id, old_id);
done:
    if (lock >= 0)
        close(lock);
    OPENSSL_cleanse(&next, sizeof next);
    luar_buf_free(&err);
    luar_buf_free(&f);
    luar_secret_store_free(s);
    luar_secret_store_free(check);
    return status;
}

int luar_cli_secrets(int argc, char **argv)
{
    opts_t o;
    luar_config_t cfg;
    int status = parse(argc, argv, "secrets", &o);
    if (status != 0)
        goto done;
    const char *sub = o.npos ? o.pos[0] : NULL;
    if (sub == NULL || strcmp(sub, "help") == 0 || strcmp(sub, "--help") == 0) {
        fputs(secrets_usage, sub ? stdout : stderr);
        status = sub ? 0 : 2;
        goto done;
    }
    /* A fresh key needs no configuration (and must work while the configured key is bad). */
    if (strcmp(sub, "gen-key") == 0) {
        status = o.npos == 1 ? cmd_gen_key() : 2;
        if (status == 2)
            fprintf(stderr, "usage: luar secrets gen-key\n");
        goto done;
    }
    if (strcmp(sub, "set") && strcmp(sub, "get") && strcmp(sub, "list") && strcmp(sub, "delete") &&
        strcmp(sub, "rotate-key")) {
        fprintf(stderr, "luar secrets: unknown command %s\n%s", sub, secrets_usage);
        status = 2;
        goto done;
    }
    status = load_config(&o, &cfg);
    if (status != 0)
        goto done;
    mkdir(cfg.data, 0700); /* a fresh install: the store's default home */
    if (strcmp(sub, "set") == 0)
        status = cmd_set(&cfg, o.npos, o.pos);
    else if (strcmp(sub, "get") == 0)
        status = cmd_get(&cfg, o.npos, o.pos);
    else if (strcmp(sub, "list") == 0)
        status = cmd_list(&cfg, o.npos);
    else if (strcmp(sub, "delete") == 0)
        status = cmd_delete(&cfg, o.npos, o.pos);
    else
        status = cmd_rotate_key(&cfg, o.npos);
    luar_config_free(&cfg);
done:
    free(o.pos);
    return status;
}

int luar_cli_audit(int argc, char **argv)
{
    opts_t o;
    luar_config_t cfg;
    luar_buf_t err;
    char head[65];
    size_t records = 0, bad = 0;
    int status = parse(argc, argv, "audit", &o);
    if (status == 0 && (o.npos < 1 || o.npos > 2 || strcmp(o.pos[0], "verify") != 0)) {
        fprintf(stderr, "usage: luar audit verify [FILE]   (default: the configured audit "
                        "log, <data>/audit.log)\n");
        status = 2;
    }
    if (status != 0) {
        free(o.pos);
        return status;
    }
    /* With a FILE the configuration is not needed (a copy taken off another machine). */
    char *path = NULL;
    if (o.npos == 2) {
        path = strdup(o.pos[1]);
    } else if (load_config(&o, &cfg) == 0) {
        path = strdup(cfg.audit_file);
        luar_config_free(&cfg);
    } else {
        free(o.pos);
        return 2;
    }
    luar_buf_init(&err, 0);
    int rc = luar_audit_verify(path, &records, head, &bad, &err);
    if (rc == 0) {
        printf("%s: ok, %zu record%s, head %s\n", path, records, records == 1 ? "" : "s", head);
        status = 0;
    } else {
        fprintf(stderr, "luar audit verify: %s\n", err.data ? err.data : luar_strerror(rc));
        status = 1;
    }
    luar_buf_free(&err);
    free(path);
    free(o.pos);
    return status;
}
