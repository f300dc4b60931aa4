import COpenBLAS

/// The one file that calls OpenBLAS: single-precision matrix products for batched prompt
/// processing. OpenBLAS runs single-threaded inside Scroll's own pool: two thread pools on
/// two cores would each spin while the other works.
enum BLAS {
    static let singleThreaded: Void = { openblas_set_num_threads(1) }()

    /// Call before a pool task that runs sgemm inside the C kernels (ck_attend_block).
    static func prepare() { _ = singleThreaded }

    /// C[m][n] (row stride ldc) = A[m][k] · B[n][k]ᵀ, all row-major: with A the activations
    /// of m tokens and B a slice of a weight matrix's rows, C holds those rows' outputs.
    static func gemmTransB(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                           c: UnsafeMutablePointer<Float>, ldc: Int) {
        _ = singleThreaded
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                    1, a, Int32(k), b, Int32(k), 0, c, Int32(ldc))
    }
}
