{
  "variables": {
    "have_openblas": "<!(node native/detect-blas.cjs have)",
    "openblas_include": "<!(node native/detect-blas.cjs include)",
    "march": "<!(node -p \"process.env.RETRO_MARCH || 'native'\")",
    "static_runtime": "<!(node -p \"process.env.RETRO_STATIC_RUNTIME ? 'yes' : 'no'\")"
  },
  "target_defaults": {
    "sources": ["native/binding.cc", "native/kernels.cc", "native/gemm.cc"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
    "cflags!": ["-fno-exceptions", "-O2"],
    "cflags_cc!": ["-fno-exceptions", "-O2"],
    "cflags_cc": ["-std=c++17", "-O3", "-march=<(march)", "-fopenmp", "-fexceptions", "-fno-math-errno"],
    "conditions": [
      ["static_runtime=='yes'", {
        "ldflags": ["-fopenmp", "-static-libstdc++", "-static-libgcc", "-Wl,--exclude-libs,ALL", "-Wl,-rpath,'$$ORIGIN'"]
      }, {
        "ldflags": ["-fopenmp"]
      }]
    ]
  },
  "targets": [
    {
      "target_name": "retro_engine",
      "conditions": [
        ["have_openblas=='yes'", {
          "defines": ["RETRO_HAVE_CBLAS", "RETRO_HAVE_OPENBLAS"],
          "include_dirs": ["<(openblas_include)"],
          "libraries": ["-lopenblas"]
        }]
      ]
    },
    {
      "target_name": "retro_engine_portable"
    }
  ]
}
