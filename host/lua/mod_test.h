/*
 * `luar test`'s doubles (SPEC §4 `luar test`, docs/testing.md): the session the command
 * opens around its VM — an SQLite queue in a temporary folder, a manual job runner that
 * only drains, the outbound client's stubs, the log capture and a 127.0.0.1 listener for
 * t.webhook and t.request — and the module `luar.test` (host/lua/test.lua, over the C
 * core in mod_test.c). Loop thread only.
 */
#ifndef LUAR_MOD_TEST_H
#define LUAR_MOD_TEST_H

#include "common/buf.h"
#include "config/config.h"
#include "lua/vm.h"

#include <uv.h>

/*
 * Opens the session on `loop` with the configuration's job settings and server limits,
 * and registers the module `luar.test` for the VMs created afterwards. Returns 0, or a
 * LUAR_E* code with a line in `err`.
 */
int luar_test_session_open(uv_loop_t *loop, const luar_config_t *cfg, luar_buf_t *err);

/* The VM the specs run in: its jobs, schedules, routes and webhook routes. */
void luar_test_session_set_vm(luar_vm_t *vm);

/*
 * Stops the listener, the runner and the queue, removes the temporary folder, restores
 * the log and the client. Run the loop afterwards until it has no more handles.
 */
void luar_test_session_close(void);

/* The stub registry and client hook (test_stubs.c), for mod_test.c. */
void luar_test_stubs_open(lua_State *L);
int luar_test_stubs_install(int listener_port);
void luar_test_stubs_remove(void);
void luar_test_stubs_set_vm(luar_vm_t *vm);
void luar_test_stubs_reset(luar_vm_t *vm);

#endif
