// The comparison the emulation harnesses share: |got - want| <= atol + rtol |want| everywhere
// (atol = rtol = 0: exact), and got NaN exactly where want is (NaN in `want` marks what a kernel
// must leave poisoned). Prints one line a check and counts failures in `emu_failures`.
#pragma once
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

inline int emu_failures = 0;

inline void check(const std::string& name, const std::vector<double>& got,
                  const std::vector<double>& want, double atol, double rtol) {
    double worst = 0;
    size_t at = 0;
    bool bad = got.size() != want.size();
    for (size_t i = 0; !bad && i < want.size(); ++i) {
        if (std::isnan(want[i]) != std::isnan(got[i])) { bad = true; at = i; break; }
        if (std::isnan(want[i])) continue;
        const double d = std::fabs(got[i] - want[i]), tol = atol + rtol * std::fabs(want[i]);
        const double r = tol > 0 ? d / tol : (d == 0 ? 0 : INFINITY);
        if (r > worst) { worst = r; at = i; }
    }
    bad = bad || worst > 1;
    std::printf("%-52s %s (worst %.3f at %zu)\n", name.c_str(), bad ? "FAIL" : "ok", worst, at);
    emu_failures += bad;
}
