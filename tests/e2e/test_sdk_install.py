"""The plugin SDK as a plugin author gets it: `cmake --install` into a temporary prefix puts
the binary, the built plugins, luar/plugin.h, luar-plugin.pc and the LuarPlugin CMake
package in place; sdk/template builds out of tree against that prefix alone (through the
CMake package, and through pkg-config), and the installed luar loads it, lists it, runs a
script that requires it and signs with its scheme."""
import glob
import hashlib
import hmac
import os
import shutil
import subprocess
import tempfile

from luar_e2e import main

SRC = os.environ.get("LUAR_SOURCE_DIR", os.getcwd())
BUILD = os.environ.get("LUAR_BUILD_DIR", os.path.join(SRC, "build"))


def run(cmd, env=None, cwd=None, input=None, timeout=300):
    e = {k: v for k, v in os.environ.items()
         if k not in ("CMAKE_PREFIX_PATH", "PKG_CONFIG_PATH", "LUAR_BIN")}
    e.update(env or {})
    p = subprocess.run(cmd, env=e, cwd=cwd, capture_output=True, timeout=timeout, input=input)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    return p.returncode, out, err


def check(cmd, **kw):
    code, out, err = run(cmd, **kw)
    assert code == 0, "%s exited %s\nstdout:\n%s\nstderr:\n%s" % (cmd, code, out, err)
    return out


def install(prefix):
    check(["cmake", "--install", BUILD, "--prefix", prefix])
    return os.path.join(prefix, "bin", "luar")


def test_install_puts_the_sdk_in_place():
    prefix = tempfile.mkdtemp(prefix="luar-sdk-")
    try:
        luar = install(prefix)
        assert os.access(luar, os.X_OK)
        with open(os.path.join(SRC, "sdk", "include", "luar", "plugin.h")) as a, \
                open(os.path.join(prefix, "include", "luar", "plugin.h")) as b:
            assert a.read() == b.read()
        pc = glob.glob(os.path.join(prefix, "lib*", "**", "pkgconfig", "luar-plugin.pc"),
                       recursive=True) + glob.glob(os.path.join(prefix, "lib*", "pkgconfig",
                                                                "luar-plugin.pc"))
        assert pc, "no luar-plugin.pc under %s" % prefix
        pcdir = os.path.dirname(pc[0])
        env = {"PKG_CONFIG_PATH": pcdir}
        cflags = check(["pkg-config", "--cflags", "luar-plugin"], env=env).split()
        assert any(os.path.realpath(f[2:]) == os.path.realpath(os.path.join(prefix, "include"))
                   for f in cflags if f.startswith("-I")), cflags
        assert check(["pkg-config", "--variable=abi", "luar-plugin"], env=env).strip() == "1"
        plugindir = os.path.realpath(check(["pkg-config", "--variable=plugindir",
                                            "luar-plugin"], env=env).strip())
        assert plugindir.startswith(os.path.realpath(prefix)), plugindir
        assert glob.glob(os.path.join(prefix, "lib*", "**", "LuarPluginConfig.cmake"),
                         recursive=True)
        # every plugin the build made is installed in the plugin folder
        built = sorted(os.path.basename(p) for p in glob.glob(os.path.join(BUILD, "plugins",
                                                                           "*.so")))
        installed = sorted(os.path.basename(p) for p in glob.glob(os.path.join(plugindir,
                                                                               "*.so")))
        assert built == installed, (built, installed)
        # the LuaLS stubs
        assert os.path.exists(os.path.join(prefix, "share", "luar", "lua", "luar", "http.lua"))
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def test_the_template_builds_out_of_tree_and_loads():
    prefix = tempfile.mkdtemp(prefix="luar-sdk-")
    try:
        luar = install(prefix)
        work = tempfile.mkdtemp(prefix="luar-template-")
        src = os.path.join(work, "template")
        shutil.copytree(os.path.join(SRC, "sdk", "template"), src)  # out of the tree
        tb = os.path.join(work, "build")
        # the CMake package, found with the prefix only
        check(["cmake", "-S", src, "-B", tb, "-DCMAKE_PREFIX_PATH=" + prefix])
        check(["cmake", "--build", tb])
        check(["cmake", "--install", tb])  # into the installed luar's plugin folder
        plugindir = glob.glob(os.path.join(prefix, "lib*", "**", "luar", "plugins"),
                              recursive=True)[0]
        assert os.path.exists(os.path.join(plugindir, "template.so")), plugindir

        # pkg-config, for Makefiles and the like
        pcdir = os.path.dirname(glob.glob(os.path.join(prefix, "**", "luar-plugin.pc"),
                                          recursive=True)[0])
        cflags = check(["pkg-config", "--cflags", "luar-plugin"],
                       env={"PKG_CONFIG_PATH": pcdir}).split()
        pcout = os.path.join(work, "pc")
        os.makedirs(pcout)
        check(["cc", "-shared", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra", "-Werror"]
              + cflags + ["-o", os.path.join(pcout, "template.so"),
                          os.path.join(src, "template.c")])

        run_dir = os.path.join(work, "run")
        os.makedirs(run_dir)
        with open(os.path.join(run_dir, "luar.conf.lua"), "w") as f:
            f.write('return { plugins = { dir = "%s", template = { greeting = "Howdy" } } }\n'
                    % plugindir)
        out = check([luar, "plugins"], cwd=run_dir)
        line = [l for l in out.splitlines() if l.startswith("template ")]
        assert line and line[0].split(None, 4) == [
            "template", "1.0.0", "1", os.path.join(plugindir, "template.so"),
            "a minimal plugin: a Lua module and a webhook scheme"], out
        with open(os.path.join(run_dir, "s.lua"), "w") as f:
            f.write('local t = require "luar.template"\n'
                    'print(t.greet("Ada"))\n'
                    'print(t.later(0.05, "waited"))\n'
                    'print(t.later(-1, "x"))\n')
        out = check([luar, "run", "s.lua"], cwd=run_dir)
        assert out.splitlines()[-3:] == ["Howdy, Ada!", "waited",
                                         "nil\ttemplate.later: seconds must be >= 0"], out
        body = b'{"hello": "template"}'
        out = check([luar, "webhook", "sign", "--scheme", "template", "--secret", "k3y",
                     "--id", "evt_9"], cwd=run_dir, input=body)
        mac = hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
        assert out == ("X-Template-Id: evt_9\nX-Template-Event: event\n"
                       "X-Template-Signature: sha256=%s\n" % mac), out

        # the pkg-config build loads as well
        with open(os.path.join(run_dir, "luar.conf.lua"), "w") as f:
            f.write('return { plugins = { dir = "%s" } }\n' % pcout)
        out = check([luar, "run", "s.lua"], cwd=run_dir)
        assert out.splitlines()[-3] == "Hello, Ada!", out
        shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


if __name__ == "__main__":
    main([test_install_puts_the_sdk_in_place, test_the_template_builds_out_of_tree_and_loads])
