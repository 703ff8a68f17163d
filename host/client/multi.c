/*
 * libcurl's multi interface on a libuv loop (curl's multi-uv.c example, made to close
 * cleanly): CURLMOPT_SOCKETFUNCTION keeps one uv_poll_t per socket curl wants watched,
 * CURLMOPT_TIMERFUNCTION drives one uv_timer_t, and both callbacks hand events back with
 * curl_multi_socket_action. Finished transfers are read with curl_multi_info_read. No
 * thread polls anything; DNS runs in curl's threaded resolver, which signals through a
 * socket like any other.
 *
 * A pooled connection's socket is dropped from the watch list by curl after each transfer
 * and added back for the next; its uv_poll_t is stopped and kept until curl closes the
 * socket (CURLOPT_CLOSESOCKETFUNCTION), rather than closed and made again per request. Only
 * sockets curl opened for connections (CURLOPT_OPENSOCKETFUNCTION marks them) are kept so;
 * any other socket curl watches (the resolver's wake-up pair) is forgotten at once, since
 * nothing would tell us when it is closed.
 *
 * One multi per loop (found in a small list, since libuv gives a loop no place of ours),
 * reference-counted: when the last reference goes, the pool's connections are closed and
 * every handle is closed, the struct being freed in the last close callback.
 */
#include "client/client.h"
#include "common/error.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* The uv_poll_t watching one of curl's sockets. */
struct sock {
    int events; /* the uv_poll events being watched (0: none yet) */
    uv_poll_t poll;
    curl_socket_t fd;
    struct luar_client_multi *m;
    struct sock *prev, *next;
    int kept; /* stopped after CURL_POLL_REMOVE, kept until curl closes the socket */
};

/*
 * The multi of one loop. `refs` counts holders; `depth` is nonzero while one of our
 * callbacks runs curl, so that a release from inside a completion defers the shutdown
 * until curl has returned. `closing` handles are still to be closed before the free.
 */
struct luar_client_multi {
    uv_loop_t *loop;
    CURLM *curlm;
    uv_timer_t timer;
    int refs;
    int depth;
    int shut;
    int closing;
    struct sock *socks;
    curl_socket_t *opened; /* connection sockets curl opened and has not closed */
    size_t nopened, capopened;
    struct luar_client_multi *next;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct luar_client_multi *g_multis;
static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void maybe_free(struct luar_client_multi *m)
{
    if (m->shut && m->closing == 0) {
        free(m->opened);
        free(m);
    }
}

static void sock_closed(uv_handle_t *h)
{
    struct sock *s = h->data;
    struct luar_client_multi *m = s->m;
    free(s);
    m->closing--;
    maybe_free(m);
}

static void timer_closed(uv_handle_t *h)
{
    struct luar_client_multi *m = h->data;
    m->closing--;
    maybe_free(m);
}

static void sock_unlink_close(struct luar_client_multi *m, struct sock *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        m->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    m->closing++;
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

/* Delivers every finished transfer to request.c. */
static void read_done(struct luar_client_multi *m)
{
    CURLMsg *msg;
    int left;
    for (;;) {
        msg = curl_multi_info_read(m->curlm, &left);
        if (msg == NULL)
            break;
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result; /* msg is invalid once the handle is removed */
        void *call = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&call);
        curl_multi_remove_handle(m->curlm, easy);
        luar_client_call_finished(call, (int)result);
    }
}

static void shutdown_multi(struct luar_client_multi *m);

/* Runs curl for `fd` (or its timers) and delivers completions; the shutdown waits. */
static void drive(struct luar_client_multi *m, curl_socket_t fd, int events)
{
    int running = 0;
    m->depth++;
    curl_multi_socket_action(m->curlm, fd, events, &running);
    read_done(m);
    m->depth--;
    if (m->depth == 0 && m->refs == 0 && !m->shut)
        shutdown_multi(m);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock *s = h->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    drive(s->m, s->fd, flags);
}

static void on_timer(uv_timer_t *h)
{
    drive(h->data, CURL_SOCKET_TIMEOUT, 0);
}

/* The stopped poll kept for `fd`, or NULL. */
static struct sock *find_kept(struct luar_client_multi *m, curl_socket_t fd)
{
    for (struct sock *s = m->socks; s; s = s->next)
        if (s->fd == fd && s->kept)
            return s;
    return NULL;
}

/* Whether curl opened `fd` for a connection through open_socket (and will close it there). */
static int fd_opened(struct luar_client_multi *m, curl_socket_t fd)
{
    for (size_t i = 0; i < m->nopened; i++)
        if (m->opened[i] == fd)
            return 1;
    return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION: opens a connection's socket and remembers it. */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct luar_client_multi *m = clientp;
    curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd == CURL_SOCKET_BAD || purpose != CURLSOCKTYPE_IPCXN)
        return fd;
    if (m->nopened == m->capopened) {
        size_t cap = m->capopened ? 2 * m->capopened : 64;
        curl_socket_t *p = realloc(m->opened, cap * sizeof *p);
        if (p == NULL)
            return fd; /* not remembered: its poll is closed at every REMOVE, as before */
        m->opened = p;
        m->capopened = cap;
    }
    m->opened[m->nopened++] = fd;
    return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: forgets the socket's poll, then closes the socket. */
static int close_socket(void *clientp, curl_socket_t fd)
{
    struct luar_client_multi *m = clientp;
    for (size_t i = 0; i < m->nopened; i++) {
        if (m->opened[i] == fd) {
            m->opened[i] = m->opened[--m->nopened];
            break;
        }
    }
    for (struct sock *s = m->socks; s; s = s->next) {
        if (s->fd == fd) {
            sock_unlink_close(m, s); /* before close(): the poll must not outlive the fd */
            break;
        }
    }
    return close(fd);
}

/* CURLMOPT_SOCKETFUNCTION: watch, change or forget one socket. */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct luar_client_multi *m = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(m->curlm, fd, NULL);
            if (fd_opened(m, fd)) {
                uv_poll_stop(&s->poll);
                s->events = 0;
                s->kept = 1;
            } else {
                sock_unlink_close(m, s);
            }
        }
        return 0;
    }
    if (s == NULL) {
        s = find_kept(m, fd);
        if (s)
            curl_multi_assign(m->curlm, fd, s);
    }
    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL)
            return -1;
        if (uv_poll_init_socket(m->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->fd = fd;
        s->m = m;
        s->poll.data = s;
        s->next = m->socks;
        if (m->socks)
            m->socks->prev = s;
        m->socks = s;
        curl_multi_assign(m->curlm, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    if (events != s->events) /* curl repeats itself; each change is an epoll_ctl */
        uv_poll_start(&s->poll, events, on_poll);
    s->events = events;
    s->kept = 0;
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl wants to be called after `ms` (-1: never). */
static int timer_cb(CURLM *curlm, long ms, void *userp)
{
    (void)curlm;
    struct luar_client_multi *m = userp;
    if (ms < 0) {
        uv_timer_stop(&m->timer);
        return 0;
    }
    /* Never call curl from inside its own callback: a zero timeout fires on the loop. */
    uv_timer_start(&m->timer, on_timer, (uint64_t)ms, 0);
    return 0;
}

static void shutdown_multi(struct luar_client_multi *m)
{
    m->shut = 1;
    pthread_mutex_lock(&g_lock);
    for (struct luar_client_multi **p = &g_multis; *p; p = &(*p)->next) {
        if (*p == m) {
            *p = m->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_lock);
    /* Closes the pool's idle connections; curl may still report sockets to forget. */
    curl_multi_cleanup(m->curlm);
    m->curlm = NULL;
    while (m->socks)
        sock_unlink_close(m, m->socks);
    uv_timer_stop(&m->timer);
    m->closing++;
    uv_close((uv_handle_t *)&m->timer, timer_closed);
}

int luar_client_multi_acquire(uv_loop_t *loop, luar_client_multi_t **out)
{
    pthread_once(&g_curl_once, curl_init_once);
    pthread_mutex_lock(&g_lock);
    struct luar_client_multi *m = g_multis;
    while (m && m->loop != loop)
        m = m->next;
    if (m) {
        m->refs++;
        pthread_mutex_unlock(&g_lock);
        *out = m;
        return 0;
    }
    pthread_mutex_unlock(&g_lock);
    m = calloc(1, sizeof *m);
    if (m == NULL)
        return LUAR_ENOMEM;
    m->curlm = curl_multi_init();
    if (m->curlm == NULL) {
        free(m);
        return LUAR_ENOMEM;
    }
    m->loop = loop;
    m->refs = 1;
    uv_timer_init(loop, &m->timer);
    m->timer.data = m;
    curl_multi_setopt(m->curlm, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(m->curlm, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->curlm, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(m->curlm, CURLMOPT_TIMERDATA, m);
    /* Beyond this many connections transfers queue inside curl (bounded file descriptors). */
    curl_multi_setopt(m->curlm, CURLMOPT_MAX_TOTAL_CONNECTIONS, 512L);
    curl_multi_setopt(m->curlm, CURLMOPT_MAX_HOST_CONNECTIONS, 256L);
    curl_multi_setopt(m->curlm, CURLMOPT_MAXCONNECTS, 256L);
    curl_multi_setopt(m->curlm, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    pthread_mutex_lock(&g_lock);
    m->next = g_multis;
    g_multis = m;
    pthread_mutex_unlock(&g_lock);
    *out = m;
    return 0;
}

void luar_client_multi_release(luar_client_multi_t *m)
{
    if (--m->refs > 0 || m->depth > 0)
        return; /* inside drive(): it shuts down once curl has returned */
    shutdown_multi(m);
}

void *luar_client_multi_curlm(luar_client_multi_t *m)
{
    return m->curlm;
}

int luar_client_multi_add(luar_client_multi_t *m, void *easy)
{
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, m);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, m);
    CURLMcode rc = curl_multi_add_handle(m->curlm, easy);
    return rc == CURLM_OK ? 0 : (rc == CURLM_OUT_OF_MEMORY ? LUAR_ENOMEM : LUAR_EINVAL);
}

void luar_client_multi_remove(luar_client_multi_t *m, void *easy)
{
    curl_multi_remove_handle(m->curlm, easy);
}
