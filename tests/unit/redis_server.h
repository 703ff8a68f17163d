/*
 * A private redis-server for tests: started on a free loopback port with a temporary
 * directory, no persistence unless asked, never the machine's own service. A missing
 * redis-server binary is a failure (the test exits 1 saying so), never a skip.
 *
 * redis_start() forks and execs `redis-server` (or $LUAR_REDIS_SERVER) with the given
 * extra arguments and waits, bounded, until the plain port answers PING.
 */
#ifndef LUAR_TEST_REDIS_SERVER_H
#define LUAR_TEST_REDIS_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct redis_server {
    pid_t pid;
    int port; /* plain TCP port (0 when the server has none) */
    char dir[256];
} redis_server_t;

/* A TCP port on 127.0.0.1 nobody listens on right now. */
static int redis_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Sends PING to 127.0.0.1:port (blocking, 1 s timeouts); 1 when it answered +PONG. */
static int redis_pings(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = 0;
    char buf[64];
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && write(fd, "PING\r\n", 6) == 6) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        ok = n >= 5 && memcmp(buf, "+PONG", 5) == 0;
    }
    close(fd);
    return ok;
}

/* Kills the server (SIGKILL) and reaps it. */
static void redis_kill(redis_server_t *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

/*
 * Starts redis-server on s->port (chosen when 0) in s->dir (made when empty) with `extra`
 * arguments (NULL-terminated, may be NULL). Returns 0 once it answers PING, -1 (with the
 * reason and its log on stderr) when it could not start within 10 s.
 */
static int redis_start(redis_server_t *s, const char *const *extra)
{
    if (s->dir[0] == '\0') {
        snprintf(s->dir, sizeof s->dir, "/tmp/luar-redis-XXXXXX");
        if (mkdtemp(s->dir) == NULL) {
            perror("mkdtemp");
            return -1;
        }
    }
    if (s->port == 0)
        s->port = redis_free_port();
    char port[16], log[300];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(log, sizeof log, "%s/redis.log", s->dir);
    const char *argv[64];
    int n = 0;
    const char *bin = getenv("LUAR_REDIS_SERVER");
    argv[n++] = bin && *bin ? bin : "redis-server";
    const char *base[] = {
        "--port",       port, "--bind",    "127.0.0.1", "--dir",       s->dir, "--save", "",
        "--appendonly", "no", "--logfile", log,         "--daemonize", "no",   NULL};
    for (int i = 0; base[i]; i++)
        argv[n++] = base[i];
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    fflush(NULL);
    s->pid = fork();
    if (s->pid < 0)
        return -1;
    if (s->pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
        }
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s (install redis-server: tools/deps.sh test)\n", argv[0],
                strerror(errno));
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        if (redis_pings(s->port))
            return 0;
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            fprintf(stderr, "redis-server exited (status %d) before answering on port %d\n",
                    WIFEXITED(status) ? WEXITSTATUS(status) : -1, s->port);
            s->pid = 0;
            char cmd[400];
            snprintf(cmd, sizeof cmd, "tail -n 5 %s 1>&2", log);
            if (system(cmd) != 0)
                fprintf(stderr, "(no log)\n");
            return -1;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "redis-server did not answer PING on port %d within 10 s\n", s->port);
    redis_kill(s);
    return -1;
}

/* Kills the server and removes its directory. */
static void redis_stop(redis_server_t *s)
{
    redis_kill(s);
    if (s->dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", s->dir);
        s->dir[0] = '\0';
    }
}

#endif
