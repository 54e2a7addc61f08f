{
  "targets": [
    {
      "target_name": "vla_onednn",
      "sources": ["src/addon.cc"],
      "defines": ["NAPI_VERSION=8"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-O3", "-fexceptions", "-fopenmp"],
      "cflags_cc": ["-O3", "-std=c++17", "-fexceptions", "-fopenmp"],
      "ldflags": ["-fopenmp", "-Wl,-z,now"],
      "libraries": ["-ldnnl"]
    }
  ]
}
