import CKernels

/// A weight matrix in the GGUF's memory map: `rows` rows of `cols` elements of `type`,
/// row-major (GGUF shape [cols, rows]). Nothing is copied or dequantized up front.
public struct Matrix {
    public let name: String
    public let data: UnsafeRawPointer
    public let type: GGMLType
    public let rows: Int
    public let cols: Int
    /// The layout the kernels see: `type` as in the file, or Scroll's repacked row layout
    /// of it (CK_TYPE_Q4_1X, CK_TYPE_Q8_0X) after `ModelWeights` repacked the matrix.
    public var kernelType: Int32
    /// For a type with no int8 kernel (Q5_0, Q5_1, Q4_K, Q5_K, Q6_K), a copy made at load in a layout
    /// that has one (ck_make_int8_copy: Q4_K as Q4_1X, Q5_0, Q5_1 and Q5_K as Q5_1X, Q6_K as Q6_0X), which the int8 path
    /// multiplies instead; the float path keeps the file's weights.
    public var int8Copy: (type: Int32, data: UnsafeRawPointer)?

    public init(name: String, data: UnsafeRawPointer, type: GGMLType, rows: Int, cols: Int, kernelType: Int32? = nil,
                int8Copy: (type: Int32, data: UnsafeRawPointer)? = nil) {
        self.name = name
        self.data = data
        self.type = type
        self.rows = rows
        self.cols = cols
        self.kernelType = kernelType ?? Int32(type.rawValue)
        self.int8Copy = int8Copy
    }

    /// The weights and their layout for the int8 path (with scratch) or the float path.
    func weights(int8: Bool) -> (type: Int32, data: UnsafeRawPointer) {
        if int8, let copy = int8Copy { return copy }
        return (kernelType, data)
    }

    public var rowBytes: Int { type.byteCount(elements: cols) }
    public func row(_ r: Int) -> UnsafeRawPointer { data + r * rowBytes }

    /// y[rows] = W · x[cols], rows split across the pool. With `scratch` (room for
    /// cols/32 int8 blocks) the int8 fast path is used where the type has one; without it,
    /// the float path (the reference).
    public func matvec(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, pool: ComputePool,
                       scratch: UnsafeMutablePointer<ck_block_q8>? = nil) {
        let w = weights(int8: scratch != nil)
        ck_pool_matvec(pool.handle, w.type, w.data, x, scratch, y, Int64(cols), Int64(rows))
    }

    public typealias Product = (matrix: Matrix, output: UnsafeMutablePointer<Float>)

    /// Two or three products of the same input in one dispatch (Q/K/V; gate/up). The
    /// descriptors live on the stack: the per-token path allocates nothing.
    public static func matvec(_ a: Product, _ b: Product, _ c: Product? = nil, input x: UnsafePointer<Float>,
                              pool: ComputePool, scratch: UnsafeMutablePointer<ck_block_q8>? = nil) {
        func out(_ p: Product) -> ck_matvec_out {
            let w = p.matrix.weights(int8: scratch != nil)
            return ck_matvec_out(type: w.type, w: w.data, y: p.output, rows: Int64(p.matrix.rows))
        }
        withUnsafeTemporaryAllocation(of: ck_matvec_out.self, capacity: 3) { outs in
            outs[0] = out(a)
            outs[1] = out(b)
            if let c { outs[2] = out(c) }
            ck_pool_matvec_multi(pool.handle, outs.baseAddress, c == nil ? 2 : 3, x, scratch, Int64(a.matrix.cols))
        }
    }

    /// Row r dequantized to floats (for embedding lookup).
    public func dequantizeRow(_ r: Int, into y: UnsafeMutablePointer<Float>) {
        ck_dequantize_row(kernelType, row(r), y, Int64(cols))
    }
}

/// Memory for repacked matrices, freed with the weights that point into it: 32 MiB arenas
/// on huge pages (ck_alloc_huge), matrices placed one after another, 64-byte aligned.
/// (A huge-page buffer per matrix made RSS 583 MiB instead of ~250: the 2 MiB rounding of
/// each of ~200 small matrices.)
final class RepackedStorage {
    private var arenas: [UnsafeMutableRawPointer] = []
    private var free = 0        // bytes left in the last arena
    private var next: UnsafeMutableRawPointer?
    private static let arenaBytes = 32 << 20

    private func place(_ bytes: Int) -> UnsafeMutableRawPointer? {
        let size = (bytes + 63) / 64 * 64
        if size > free || next == nil {
            let arena = max(Self.arenaBytes, size)
            guard let p = ck_alloc_huge(arena) else { return nil }
            arenas.append(p)
            next = p
            free = arena
        }
        defer { next = next! + size; free -= size }
        return next
    }

    /// The matrix in Scroll's repacked layout when its type has one, with an int8 copy when
    /// its type has no int8 kernel, else the matrix itself (also when no memory is left for
    /// the copy, or its weights do not fit one: the file's layout still works).
    func repacked(_ m: Matrix) -> Matrix {
        let type = Int32(m.type.rawValue), copyType = ck_int8_copy_type(type)
        if copyType != type, m.cols % 64 == 0,
           let buffer = place(m.rows * m.cols / 32 * Int(ck_type_block_bytes(copyType))),
           ck_make_int8_copy(type, m.data, buffer, Int64(m.cols), Int64(m.rows)) == 0 {
            var copy = m
            copy.int8Copy = (copyType, UnsafeRawPointer(buffer))
            return copy
        }
        let t = ck_repacked_type(Int32(m.type.rawValue), Int64(m.cols))
        guard t != Int32(m.type.rawValue), let buffer = place(m.rows * m.rowBytes) else { return m }
        ck_repack_rows(Int32(m.type.rawValue), m.data, buffer, Int64(m.cols), Int64(m.rows))
        return Matrix(name: m.name, data: UnsafeRawPointer(buffer), type: m.type, rows: m.rows, cols: m.cols, kernelType: t)
    }

    deinit { arenas.forEach { ck_free_huge($0) } }
}

/// A 1-D float tensor (norm weights, biases), dequantized once at load.
public struct Vector {
    public let values: [Float]
}

extension GGUFFile {
    /// The named tensor as a matrix of `rows` × `cols`, checking shape and type.
    func matrix(_ name: String, rows: Int, cols: Int) throws -> Matrix {
        guard let info = tensors[name] else { throw EngineError.missingTensor(name) }
        guard info.dims == [cols, rows] else { throw EngineError.badTensorShape(name, expected: [cols, rows], found: info.dims) }
        let ptr = try checkedData(of: info)
        return Matrix(name: name, data: ptr, type: GGMLType(rawValue: info.type)!, rows: rows, cols: cols)
    }

    /// A tensor's data after a scan for NaN and infinity (ck_find_nonfinite).
    private func checkedData(of info: GGUFTensorInfo) throws -> UnsafeRawPointer {
        let ptr = try data(of: info)
        let at = ck_find_nonfinite(Int32(info.type), ptr, Int64(info.elementCount))
        guard at < 0 else { throw EngineError.malformed(path, "tensor '\(info.name)' holds NaN or infinity at element \(at)") }
        return ptr
    }

    func vector(_ name: String, count: Int) throws -> Vector {
        guard let info = tensors[name] else { throw EngineError.missingTensor(name) }
        guard info.dims == [count] else { throw EngineError.badTensorShape(name, expected: [count], found: info.dims) }
        let ptr = try checkedData(of: info)
        var values = [Float](repeating: 0, count: count)
        values.withUnsafeMutableBufferPointer { _ = ck_dequantize_row(Int32(info.type), ptr, $0.baseAddress, Int64(count)) }
        return Vector(values: values)
    }
}
