import CKernels

/// Owns the C worker pool the matrix products run on (threads created once, in init).
public final class ComputePool {
    let handle: OpaquePointer?
    public let threads: Int

    public init(threads: Int) {
        handle = ck_pool_create(Int32(max(1, threads)))
        self.threads = Int(ck_pool_size(handle))
    }

    deinit { ck_pool_destroy(handle) }
}
