import CKernels

/// A weight matrix in the GGUF's memory map: `rows` rows of `cols` elements of `type`,
/// row-major (GGUF shape [cols, rows]). Nothing is copied or dequantized up front.
public struct Matrix {
    public let name: String
    public let data: UnsafeRawPointer
    public let type: GGMLType
    public let rows: Int
    public let cols: Int

    public var rowBytes: Int { type.byteCount(elements: cols) }
    public func row(_ r: Int) -> UnsafeRawPointer { data + r * rowBytes }

    /// y[rows] = W · x[cols], rows split across the pool. With `scratch` (room for
    /// cols/32 int8 blocks) the int8 fast path is used where the type has one; without it,
    /// the float path (the reference).
    public func matvec(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, pool: ComputePool,
                       scratch: UnsafeMutablePointer<ck_block_q8>? = nil) {
        ck_pool_matvec(pool.handle, Int32(type.rawValue), data, x, scratch, y, Int64(cols), Int64(rows))
    }

    /// Row r dequantized to floats (for embedding lookup).
    public func dequantizeRow(_ r: Int, into y: UnsafeMutablePointer<Float>) {
        ck_dequantize_row(Int32(type.rawValue), row(r), y, Int64(cols))
    }
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
        let ptr = try data(of: info)
        return Matrix(name: name, data: ptr, type: GGMLType(rawValue: info.type)!, rows: rows, cols: cols)
    }

    func vector(_ name: String, count: Int) throws -> Vector {
        guard let info = tensors[name] else { throw EngineError.missingTensor(name) }
        guard info.dims == [count] else { throw EngineError.badTensorShape(name, expected: [count], found: info.dims) }
        let ptr = try data(of: info)
        var values = [Float](repeating: 0, count: count)
        values.withUnsafeMutableBufferPointer { _ = ck_dequantize_row(Int32(info.type), ptr, $0.baseAddress, Int64(count)) }
        return Vector(values: values)
    }
}
