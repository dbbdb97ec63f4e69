// RapidCheck properties inside doctest.
//
// Each property runs RC_PARAMS' max_success cases (meson option property_cases, 10000 in the main
// CI run). On failure RapidCheck prints the shrunk counterexample and, at exit, the RC_PARAMS
// string that replays it exactly, e.g.
//   RC_PARAMS="reproduce=BchdlNGdvJ3..." build/tests/crdt/or-set-test
// A run with a chosen seed: RC_PARAMS="seed=12345 max_success=10000".
#pragma once

#include <doctest/doctest.h>
#include <rapidcheck.h>

#define PROPERTY(description, ...) CHECK(rc::check(description, __VA_ARGS__))
