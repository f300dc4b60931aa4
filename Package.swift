// swift-tools-version:5.9
import PackageDescription

// The C kernels are compiled with -O3 even in debug builds: the forward pass is all in them,
// and an unoptimized matvec makes the real-model tests minutes instead of seconds.
let kernelFlags: [CSetting] = [.unsafeFlags(["-O3", "-fno-math-errno", "-std=gnu11"])]

let package = Package(
    name: "Scroll",
    products: [
        .executable(name: "scroll", targets: ["scroll"]),
        .library(name: "Engine", targets: ["Engine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(name: "CKernels", dependencies: ["COpenBLAS"], cSettings: kernelFlags),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CReadline", pkgConfig: "readline",
                       providers: [.apt(["libreadline-dev"])]),
        .target(name: "Engine", dependencies: ["CKernels", "COpenBLAS", "CZstd"]),
        .executableTarget(name: "scroll", dependencies: [
            "Engine", "CReadline",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // The readers of untrusted files under libFuzzer (scripts/fuzz.sh), or replaying inputs.
        .executableTarget(name: "scroll-fuzz", dependencies: ["Engine"]),
        // Reference/ (golden data and the scripts that made it) is read from the source tree.
        .testTarget(name: "EngineTests", dependencies: ["Engine", "CKernels"],
                    exclude: ["Reference"]),
        .testTarget(name: "ScrollTests", dependencies: ["scroll"]),
    ]
)
