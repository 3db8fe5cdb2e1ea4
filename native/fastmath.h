// exp for float that the compiler can vectorise (std::exp is a libm call per element, which dominated the
// loss and GELU kernels in profiles). Cephes' expf: range reduction x = k ln2 + r, |r| <= ln2/2, then a
// degree-7 minimax polynomial; max relative error ~2e-7 (about 1 ulp) on [-87, 88].
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace retro {

inline float exp_fast(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // round to nearest by adding and removing 1.5 * 2^23 (std::floor would keep the loop scalar)
  float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - k * 0.693359375f + k * 2.12194440e-4f;
  float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * z + r + 1.0f;
  int32_t bits = ((int32_t)k + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}

}  // namespace retro
