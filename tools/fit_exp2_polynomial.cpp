// SPDX-License-Identifier: MIT
// Derives the coefficients of the 2^f polynomial in include/qkv/detail/packet_math.hpp:
// p(f) = 1 + c1·f + ... + c5·f^5 on [-1/2, 1/2], with the least maximum relative error.
// It is not part of the build:
//
//   g++ -O2 -std=c++17 -isystem /usr/include/eigen3 tools/fit_exp2_polynomial.cpp -o fit && ./fit
//
// Lawson's iteration: weighted least squares on a fine grid, each point's weight multiplied
// by its error after every solve, converges to the minimax (equioscillating) fit. p(0) = 1
// is kept exact so that e^0 = 1 exactly, and the fit is then checked as the kernel runs it:
// coefficients rounded to float, Horner's rule in float with FMAs.
#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdio>

int main() {
  constexpr int degree = 5, points = 4001, iterations = 3000;
  Eigen::VectorXd f(points), target(points), weight = Eigen::VectorXd::Ones(points);
  Eigen::MatrixXd powers(points, degree);  // f^1 .. f^degree
  for (int i = 0; i < points; ++i) {
    f[i] = -0.5 + double(i) / (points - 1);
    target[i] = std::exp2(f[i]);
    for (int k = 0; k < degree; ++k) powers(i, k) = std::pow(f[i], k + 1);
  }
  Eigen::VectorXd c;  // c1 .. c5
  Eigen::VectorXd relative_error;
  for (int it = 0; it < iterations; ++it) {
    const Eigen::VectorXd w = weight.array().sqrt() / target.array();  // relative, weighted
    const Eigen::VectorXd rhs = (w.array() * (target.array() - 1.0)).matrix();
    c = (w.asDiagonal() * powers).colPivHouseholderQr().solve(rhs);
    relative_error = ((1.0 + (powers * c).array()) / target.array() - 1.0).abs();
    weight = weight.cwiseProduct(relative_error);
    weight /= weight.sum();
  }
  std::printf("max relative error, exact arithmetic: %.3e\ncoefficients, highest first:\n",
              relative_error.maxCoeff());
  float cf[degree + 1] = {1.0f};
  for (int k = degree; k >= 1; --k) {
    cf[k] = static_cast<float>(c[k - 1]);
    std::printf("  %.17e\n", c[k - 1]);
  }
  double worst = 0;
  for (int i = 0; i <= 1000000; ++i) {
    const float x = -0.5f + float(i) / 1e6f;
    float p = cf[degree];
    for (int k = degree - 1; k >= 0; --k) p = std::fma(p, x, cf[k]);
    worst = std::max(worst, std::abs(double(p) / std::exp2(double(x)) - 1.0));
  }
  std::printf("max relative error in float (Horner, FMA): %.3e\n", worst);
}
