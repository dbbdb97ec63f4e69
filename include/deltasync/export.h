// DELTASYNC_API marks what libdeltasync exports. The library is compiled with hidden symbol
// visibility (meson's gnu_symbol_visibility: 'hidden'), so everything not marked -- the engine,
// the codec, and the Cap'n Proto and KJ code they instantiate -- stays inside the shared object
// and cannot clash with another copy of those libraries in the application.
#pragma once

#define DELTASYNC_API __attribute__((visibility("default")))
