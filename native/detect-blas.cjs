// Prints the gyp settings for the system BLAS: "yes" when a CBLAS with OpenBLAS is installed (Debian's
// libopenblas-dev), "no" otherwise, or when RETRO_BLAS=none asks for the portable kernel only.
const fs = require("node:fs");
const want = (process.env.RETRO_BLAS || "auto").toLowerCase();
const dirs = ["/usr/include/x86_64-linux-gnu", "/usr/include/aarch64-linux-gnu", "/usr/include/openblas", "/usr/include"];
const libs = ["/usr/lib/x86_64-linux-gnu/libopenblas.so", "/usr/lib/aarch64-linux-gnu/libopenblas.so", "/usr/lib/libopenblas.so", "/usr/lib64/libopenblas.so"];
const header = dirs.find((d) => fs.existsSync(`${d}/cblas.h`) && fs.existsSync(`${d}/openblas_config.h`));
const lib = libs.find((l) => fs.existsSync(l));
const found = want !== "none" && header && lib;
if (want === "openblas" && !found) {
  console.error("RETRO_BLAS=openblas but OpenBLAS was not found: apt-get install -y libopenblas-dev");
  process.exit(1);
}
const what = process.argv[2];
if (what === "have") console.log(found ? "yes" : "no");
else if (what === "include") console.log(found ? header : "");
