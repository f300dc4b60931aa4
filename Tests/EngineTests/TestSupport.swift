import CKernels
import Engine
import Foundation
import XCTest

/// Paths and reference data shared by the engine tests.
enum TestSupport {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The default model, as scripts/setup.sh installs it.
    static var modelPath: String {
        repoRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    }

    /// Gemma 3 270M (base, Q4_K_M), as scripts/setup.sh installs it: a SentencePiece
    /// vocabulary and the gemma3 architecture.
    static var gemmaPath: String {
        repoRoot.appendingPathComponent("models/gemma-3-270m-q4_k_m.gguf").path
    }

    static func referenceURL(_ name: String) -> URL {
        repoRoot.appendingPathComponent("Tests/EngineTests/Reference/\(name)")
    }

    static func referenceJSON(_ name: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(contentsOf: referenceURL(name)))
    }

    /// One loaded model and tokenizer for all tests of a run: loading is cheap (mmap) but
    /// building the tokenizer tables is not free in a debug build.
    static let shared: (model: Transformer, tokenizer: Tokenizer) = {
        let model = try! Transformer(path: modelPath, threads: 2)
        return (model, try! Tokenizer(gguf: model.gguf))
    }()

}

extension XCTestCase {
    /// Writes bytes to a fresh temporary file that is removed when the test ends.
    func temporaryFile(_ bytes: [UInt8]) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("scroll-test-\(UUID().uuidString)")
        try Data(bytes).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }
}

/// A minimal GGUF writer for tests: builds synthetic files to exercise every metadata value
/// type and the reader's error paths.
struct GGUFBuilder {
    enum Value {
        case u8(UInt8), i8(Int8), u16(UInt16), i16(Int16), u32(UInt32), i32(Int32), f32(Float), bool(Bool)
        case str(String), u64(UInt64), i64(Int64), f64(Double), array(typeCode: UInt32, [Value])

        var typeCode: UInt32 {
            switch self {
            case .u8: return 0; case .i8: return 1; case .u16: return 2; case .i16: return 3
            case .u32: return 4; case .i32: return 5; case .f32: return 6; case .bool: return 7
            case .str: return 8; case .array: return 9; case .u64: return 10; case .i64: return 11
            case .f64: return 12
            }
        }
    }

    var version: UInt32 = 3
    var metadata: [(String, Value)] = []

    init() {}

    /// A copy of a real file's metadata and tensors, to be altered one value at a time;
    /// `metadataWhere` keeps only some keys, `tensors: false` none of the tensors.
    init(copying file: GGUFFile, metadataWhere keep: (String) -> Bool = { _ in true }, tensors copyTensors: Bool = true) throws {
        func value(_ v: GGUFValue) -> Value {
            switch v {
            case .uint8(let x): return .u8(x)
            case .int8(let x): return .i8(x)
            case .uint16(let x): return .u16(x)
            case .int16(let x): return .i16(x)
            case .uint32(let x): return .u32(x)
            case .int32(let x): return .i32(x)
            case .uint64(let x): return .u64(x)
            case .int64(let x): return .i64(x)
            case .float32(let x): return .f32(x)
            case .float64(let x): return .f64(x)
            case .bool(let x): return .bool(x)
            case .string(let x): return .str(x)
            case .array(let items):
                let converted = items.map(value)
                return .array(typeCode: converted.first?.typeCode ?? 0, converted)
            }
        }
        metadata = file.metadata.keys.sorted().filter(keep).map { ($0, value(file.metadata[$0]!)) }
        tensors = try (copyTensors ? file.tensorNames : []).map { name in
            let info = file.tensors[name]!
            let type = GGMLType(rawValue: info.type)!
            let bytes = type.byteCount(elements: info.elementCount)
            let data = try file.data(of: info)
            return (name, info.dims.map(UInt64.init), info.type, Array(UnsafeRawBufferPointer(start: data, count: bytes)))
        }
    }

    /// Sets (or adds) metadata `key`.
    mutating func set(_ key: String, _ v: Value) {
        if let i = metadata.firstIndex(where: { $0.0 == key }) { metadata[i].1 = v } else { metadata.append((key, v)) }
    }
    var tensors: [(name: String, dims: [UInt64], type: UInt32, data: [UInt8])] = []

    private static func le<T: FixedWidthInteger>(_ v: T, _ out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    private static func str(_ s: String, _ out: inout [UInt8]) {
        le(UInt64(s.utf8.count), &out)
        out.append(contentsOf: s.utf8)
    }

    private static func value(_ v: Value, _ out: inout [UInt8]) {
        switch v {
        case .u8(let x): le(x, &out)
        case .i8(let x): le(x, &out)
        case .u16(let x): le(x, &out)
        case .i16(let x): le(x, &out)
        case .u32(let x): le(x, &out)
        case .i32(let x): le(x, &out)
        case .f32(let x): le(x.bitPattern, &out)
        case .bool(let x): le(UInt8(x ? 1 : 0), &out)
        case .str(let s): str(s, &out)
        case .u64(let x): le(x, &out)
        case .i64(let x): le(x, &out)
        case .f64(let x): le(x.bitPattern, &out)
        case .array(let t, let items):
            le(t, &out)
            le(UInt64(items.count), &out)
            for i in items { value(i, &out) }
        }
    }

    func build() -> [UInt8] {
        var out: [UInt8] = Array("GGUF".utf8)
        Self.le(version, &out)
        Self.le(UInt64(tensors.count), &out)
        Self.le(UInt64(metadata.count), &out)
        for (k, v) in metadata {
            Self.str(k, &out)
            Self.le(v.typeCode, &out)
            Self.value(v, &out)
        }
        var offset: UInt64 = 0
        for t in tensors {
            Self.str(t.name, &out)
            Self.le(UInt32(t.dims.count), &out)
            for d in t.dims { Self.le(d, &out) }
            Self.le(t.type, &out)
            Self.le(offset, &out)
            offset += UInt64((t.data.count + 31) / 32 * 32)
        }
        while out.count % 32 != 0 { out.append(0) }
        for t in tensors {
            out += t.data
            while out.count % 32 != 0 { out.append(0) }
        }
        return out
    }
}

/// Holds an int8 copy (ck_make_int8_copy) of rows of `type` to the file's weights, row by row:
/// Q5_0 and Q5_1 → Q5_1X are exact; Q4_K → Q4_1X and Q5_K → Q5_1X move a weight by at most the f16
/// rounding of its sub-block's scale and min, 2^-11 · (q_max·|d| + |m|) of the copy's own d
/// and m (q_max 15 or 31); Q6_K → Q6_0X by at most the f16 rounding of its sub-block's scale,
/// 2^-11 · 32·|d| of the copy's own d (elements 0–15) or e (16–31).
func assertInt8CopyHoldsWeights(type: GGMLType, original: UnsafeRawPointer, copy: UnsafeRawPointer, cols: Int,
                                rows: [Int], file: StaticString = #filePath, line: UInt = #line) {
    let t = Int32(type.rawValue), copyType = ck_int8_copy_type(t), nb = cols / 32
    let copyRowBytes = nb * Int(ck_type_block_bytes(copyType))
    var exact = [Float](repeating: 0, count: cols), copied = exact
    for r in rows {
        let row = copy + r * copyRowBytes
        _ = ck_dequantize_row(t, original + r * type.byteCount(elements: cols), &exact, Int64(cols))
        _ = ck_dequantize_row(copyType, row, &copied, Int64(cols))
        // The copy's two f16 arrays after its codes: d and m (Q4_1X, Q5_1X), or d and e (Q6_0X).
        let scales = (row + nb * 16).assumingMemoryBound(to: UInt16.self)
        for b in 0..<nb {
            let block = (b * 32)..<(b * 32 + 32)
            let first = abs(Float(Float16(bitPattern: scales[b]))), second = abs(Float(Float16(bitPattern: scales[nb + b])))
            let bound: Float
            switch type {
            case .q5_0, .q5_1: bound = 0
            case .q4_K, .q5_K: bound = ((type == .q4_K ? 15 : 31) * first + second) / 2048 * 1.001 + 0x1p-24
            default: bound = 32 * max(first, second) / 2048 * 1.001 + 0x1p-24
            }
            for j in block where abs(copied[j] - exact[j]) > bound {
                XCTFail("\(type) row \(r) element \(j): \(copied[j]) against \(exact[j]), bound \(bound)", file: file, line: line)
                return
            }
        }
    }
}
