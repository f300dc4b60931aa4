#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a tensor lives in a GGUF file and what it holds.
public struct GGUFTensorInfo {
    public let name: String
    /// GGUF order: dims[0] is the fastest-varying (a row's length), so a matrix [in, out]
    /// is stored row-major as out rows of in elements.
    public let dims: [Int]
    public let type: UInt32
    /// Offset from the start of the data section.
    public let offset: Int
    public var elementCount: Int { dims.reduce(1, *) }
}

/// A GGUF v2/v3 file, memory-mapped read-only (spec: ggml/docs/gguf.md).
///
/// Layout: magic "GGUF", uint32 version, uint64 tensor count, uint64 metadata count, the
/// metadata key/values, the tensor infos, padding to `general.alignment` (default 32), then
/// the tensor data. The header is checked first (magic, then version) so that a foreign file
/// gets a clear error before anything else is parsed.
public final class GGUFFile {
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    public let tensors: [String: GGUFTensorInfo]
    /// Tensor names in file order.
    public let tensorNames: [String]
    public let alignment: Int
    let mapping: UnsafeRawPointer
    let mappingSize: Int
    let dataOffset: Int

    static let maxNameBytes = 256

    public init(path: String) throws {
        self.path = path
        // O_NONBLOCK: a FIFO given as the model must not hang the open (it is refused below).
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw EngineError.fileNotFound(path) }
            throw EngineError.cannotRead(path, String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw EngineError.cannotRead(path, String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw EngineError.cannotRead(path, "not a regular file") }
        let size = Int(st.st_size)
        guard size >= 4 else { throw EngineError.notGGUF(path) }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw EngineError.cannotRead(path, String(cString: strerror(errno)))
        }
        let base = UnsafeRawPointer(map)
        do {
            var r = ByteReader(base: base, count: size, path: path)
            guard try r.read(UInt32.self, "magic") == 0x4655_4747 else { throw EngineError.notGGUF(path) } // "GGUF"
            let version = try r.read(UInt32.self, "version")
            guard version == 2 || version == 3 else { throw EngineError.unsupportedGGUFVersion(path, version) }
            let tensorCount = try r.read(UInt64.self, "tensor count")
            let kvCount = try r.read(UInt64.self, "metadata count")
            // Each entry takes at least 8+4 (kv) or 8+4+8+4 (tensor) bytes: reject counts the
            // file cannot hold before reserving anything for them.
            guard kvCount <= UInt64(size / 12), tensorCount <= UInt64(size / 24) else {
                throw EngineError.truncated(path, "header counts exceed file size")
            }
            var metadata: [String: GGUFValue] = [:]
            for _ in 0..<kvCount {
                let key = try r.readString("metadata key")
                // The spec allows 65,535 bytes; real keys are short, and a damaged length made
                // one "key" of most of the file, which then filled an error message.
                guard key.utf8.count <= Self.maxNameBytes else { throw EngineError.malformed(path, "a metadata key of \(key.utf8.count) bytes") }
                let type = try r.read(UInt32.self, "type of \(key)")
                metadata[key] = try Self.readValue(type: type, key: key, &r, depth: 0)
            }
            var tensors: [String: GGUFTensorInfo] = [:]
            var names: [String] = []
            for _ in 0..<tensorCount {
                let name = try r.readString("tensor name")
                guard name.utf8.count <= Self.maxNameBytes else { throw EngineError.malformed(path, "a tensor name of \(name.utf8.count) bytes") }
                let nDims = try r.read(UInt32.self, "dims of \(name)")
                guard nDims >= 1, nDims <= 4 else { throw EngineError.malformed(path, "tensor '\(name)' has \(nDims) dimensions") }
                var dims: [Int] = []
                for _ in 0..<nDims {
                    let d = try r.read(UInt64.self, "shape of \(name)")
                    guard d > 0, d < 1 << 40 else { throw EngineError.malformed(path, "tensor '\(name)' has dimension \(d)") }
                    dims.append(Int(d))
                }
                let type = try r.read(UInt32.self, "type of \(name)")
                let offset = try r.read(UInt64.self, "offset of \(name)")
                guard offset < UInt64(size) else { throw EngineError.truncated(path, "tensor '\(name)' starts past end of file") }
                tensors[name] = GGUFTensorInfo(name: name, dims: dims, type: type, offset: Int(offset))
                names.append(name)
            }
            let alignment = metadata["general.alignment"]?.int ?? 32
            guard alignment > 0, alignment & (alignment - 1) == 0 else {
                throw EngineError.malformed(path, "general.alignment \(alignment) is not a power of two")
            }
            let dataOffset = (r.offset + alignment - 1) / alignment * alignment
            self.version = version
            self.metadata = metadata
            self.tensors = tensors
            self.tensorNames = names
            self.alignment = alignment
            self.mapping = base
            self.mappingSize = size
            self.dataOffset = dataOffset
        } catch {
            munmap(map, size)
            throw error
        }
    }

    /// The file's size in bytes.
    public var fileBytes: Int { mappingSize }

    deinit { munmap(UnsafeMutableRawPointer(mutating: mapping), mappingSize) }

    private static func readValue(type: UInt32, key: String, _ r: inout ByteReader, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint8(try r.read(UInt8.self, key))
        case 1: return .int8(try r.read(Int8.self, key))
        case 2: return .uint16(try r.read(UInt16.self, key))
        case 3: return .int16(try r.read(Int16.self, key))
        case 4: return .uint32(try r.read(UInt32.self, key))
        case 5: return .int32(try r.read(Int32.self, key))
        case 6: return .float32(Float(bitPattern: try r.read(UInt32.self, key)))
        case 7: return .bool(try r.read(UInt8.self, key) != 0)
        case 8: return .string(try r.readString(key))
        case 9:
            guard depth < 4 else { throw EngineError.malformed(r.path, "arrays nested too deep in \(key)") }
            let elementType = try r.read(UInt32.self, key)
            let n = try r.read(UInt64.self, key)
            guard n <= UInt64(r.count - r.offset) else { throw EngineError.truncated(r.path, "array \(key)") }
            var values: [GGUFValue] = []
            values.reserveCapacity(Int(n))
            for _ in 0..<n { values.append(try readValue(type: elementType, key: key, &r, depth: depth + 1)) }
            return .array(values)
        case 10: return .uint64(try r.read(UInt64.self, key))
        case 11: return .int64(try r.read(Int64.self, key))
        case 12: return .float64(Double(bitPattern: try r.read(UInt64.self, key)))
        default: throw EngineError.malformed(r.path, "unknown value type \(type) for \(key)")
        }
    }

    /// Pointer to a tensor's data, after checking its type is supported and its bytes lie
    /// inside the file.
    public func data(of info: GGUFTensorInfo) throws -> UnsafeRawPointer {
        guard let type = GGMLType(rawValue: info.type) else {
            throw EngineError.unsupportedTensorType(info.name, info.type)
        }
        guard info.dims[0] % type.blockSize == 0 else {
            throw EngineError.malformed(path, "tensor '\(info.name)' row of \(info.dims[0]) is not a multiple of its block size")
        }
        let bytes = type.byteCount(elements: info.elementCount)
        let start = dataOffset + info.offset
        guard start + bytes <= mappingSize else { throw EngineError.truncated(path, "data of tensor '\(info.name)'") }
        return mapping + start
    }
}
