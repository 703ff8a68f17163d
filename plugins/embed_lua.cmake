# Turns a Lua source file into a C header holding it as a byte array, so a plugin's Lua
# module ships inside its .so (loaded with luaL_loadbuffer from the plugin's open()).
#
#   cmake -DIN=slack.lua -DOUT=slack_lua.h -DNAME=slack_lua -P embed_lua.cmake
#
# defines `static const unsigned char NAME[]` and `#define NAME_len`. Hex bytes rather than
# a string literal: no escaping rules to get wrong and no compiler limit on literal length.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" nhex)
math(EXPR len "${nhex} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n"
       bytes "${bytes}")
file(WRITE "${OUT}.tmp"
     "/* Generated from ${IN} by plugins/embed_lua.cmake: do not edit. */\n"
     "static const unsigned char ${NAME}[] = {\n${bytes}\n};\n"
     "#define ${NAME}_len ((size_t)${len})\n")
file(RENAME "${OUT}.tmp" "${OUT}")
