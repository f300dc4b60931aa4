import CKernels
@testable import Engine
import Foundation
import XCTest

/// Model files crafted to crash or exhaust the loader: each of the adversarial pass's
/// reproducers, applied to a copy of the tiny reference model, is refused with one line
/// naming the file and the problem before anything is sized from it.
final class HostileModelTests: XCTestCase {
    static let tiny = TestSupport.referenceURL("tiny/tiny-llama.gguf").path

    func write(_ b: GGUFBuilder) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("hostile-\(UUID().uuidString).gguf")
        try Data(b.build()).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    /// Loads the model and its vocabulary as the CLI does; returns the error's text.
    func refusal(_ b: GGUFBuilder, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let path = try write(b)
        do {
            let gguf = try GGUFFile(path: path)
            _ = try Transformer(gguf: gguf)
            _ = try Tokenizer(gguf: gguf)
        } catch let error as EngineError {
            let text = "\(error)"
            XCTAssertFalse(text.contains("\n"), text, file: file, line: line)
            return text
        }
        XCTFail("the crafted file loaded", file: file, line: line)
        return ""
    }

    func testCraftedMetadataIsRefusedInOneLine() throws {
        let base = try GGUFBuilder(copying: GGUFFile(path: Self.tiny))
        let cases: [(String, GGUFBuilder.Value, String)] = [
            ("llama.attention.head_count_kv", .u32(0), "head_count_kv = 0"),                      // was a division by zero
            ("llama.attention.key_length", .u64(1 << 62), "key_length"),                          // was an overflow trap
            ("llama.context_length", .u32(0xFFFF_FFFF), "context_length = 4294967295"),           // asked for 549 GB
            ("llama.context_length", .u32(100_000_000), "context_length = 100000000"),            // grew to 23 GB
            ("llama.block_count", .u32(0xFFFF_FFFF), "block_count"),                              // asked for 1.8 TB
            ("llama.block_count", .u32(40), "blk.39"),                                            // more layers than tensors
            ("llama.rope.scaling.factor", .f32(.infinity), "rope.scaling.factor"),                // was a Double → Int trap
            ("llama.rope.freq_base", .f32(.nan), "rope.freq_base"),
            ("llama.attention.layer_norm_rms_epsilon", .f32(-1), "layer_norm_rms_epsilon"),
            ("llama.embedding_length", .u32(96), "token_embd.weight"),
            ("tokenizer.ggml.bos_token_id", .u32(1_000_000), "bos_token_id = 1000000"),           // read past the embedding
            ("tokenizer.ggml.eos_token_id", .i32(-3), "eos_token_id = -3"),
        ]
        for (key, value, fragment) in cases {
            var b = base
            b.set(key, value)
            let text = try refusal(b)
            XCTAssertTrue(text.contains(fragment), "\(key): \(text)")
        }
    }

    /// A NaN or infinity in a norm weight or in a quantized block's scale is found at load,
    /// wherever it sits (it ran before with garbage output and exit status 0).
    func testNonFiniteWeightsAreRefused() throws {
        let base = try GGUFBuilder(copying: GGUFFile(path: Self.tiny))
        var checked = Set<UInt32>()
        for (i, t) in base.tensors.enumerated() where !checked.contains(t.type) {
            checked.insert(t.type)
            let type = GGMLType(rawValue: t.type)!
            // The last block's first scale (Q6_K keeps it at the end of the block), or the last value.
            let blockBytes = type.byteCount(elements: type.blockSize)
            let blockStart = t.data.count - blockBytes
            let at = type == .q6_K ? blockStart + 208 : blockStart
            for bits: [UInt8] in [[0x00, 0x7E], [0x00, 0x7C]] {   // half NaN, half infinity
                var b = base
                if type == .f32 {
                    b.tensors[i].data.replaceSubrange((t.data.count - 4)..., with: withUnsafeBytes(of: Float.nan.bitPattern) { Array($0) })
                } else {
                    b.tensors[i].data.replaceSubrange(at..<(at + 2), with: bits)
                }
                let text = try refusal(b)
                XCTAssertTrue(text.contains("'\(t.name)' holds NaN or infinity"), "\(type): \(text)")
            }
        }
        XCTAssertGreaterThanOrEqual(checked.count, 2, "the tiny model holds F32 norms and quantized matrices")
    }

    /// A thousand random mutations of the tiny model's header, metadata and tensor table
    /// (bits flipped, bytes overwritten, the file cut, bytes inserted): each loads or throws
    /// one line, never crashes or hangs, and the process's peak memory stays within 1 GB of
    /// what it was.
    func testMutatedModelHeadersNeverCrash() throws {
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.tiny)))
        let metadataEnd = try GGUFFile(path: Self.tiny).dataOffset   // where the tensor data starts
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let peakBefore = usage.ru_maxrss
        var rng = RandomGenerator(seed: 5)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mutated-\(UUID().uuidString).gguf").path
        addTeardownBlock { unlink(path) }
        var refused = 0
        for trial in 0..<1000 {
            var bytes = good
            let at = Int(rng.next() % UInt64(metadataEnd))
            switch trial % 4 {
            case 0: bytes[at] ^= UInt8(1 << (rng.next() % 8))
            case 1: for i in 0..<8 where at + i < bytes.count { bytes[at + i] = UInt8(truncatingIfNeeded: rng.next()) }
            case 2: bytes = Array(bytes.prefix(at))
            default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                let file = try GGUFFile(path: path)
                _ = try Transformer(gguf: file)
                _ = try Tokenizer(gguf: file)
            } catch let error as EngineError {
                refused += 1
                XCTAssertFalse("\(error)".contains("\n"), "\(error)")
            }
        }
        getrusage(RUSAGE_SELF.rawValue, &usage)
        XCTAssertLessThan(usage.ru_maxrss - peakBefore, 1 << 20, "peak RSS grew by more than 1 GB (ru_maxrss is in KB)")
        XCTAssertGreaterThan(refused, 100, "most mutations are refused")
    }

    /// ck_find_nonfinite against a plain loop over the dequantized values, for every file type:
    /// a scale that is NaN makes some dequantized value non-finite, and a clean block none.
    func testNonFiniteScanMatchesDequantization() {
        var rng = RandomGenerator(seed: 3)
        for type in [GGMLType.f32, .f16, .q4_0, .q4_1, .q5_0, .q8_0, .q4_K, .q6_K] {
            let n = 512, bytes = type.byteCount(elements: n)
            var data = (0..<bytes).map { _ in UInt8(truncatingIfNeeded: rng.next() & 0x3B) }   // exponents stay finite
            var y = [Float](repeating: 0, count: n)
            XCTAssertEqual(ck_find_nonfinite(Int32(type.rawValue), data, Int64(n)), -1, "\(type)")
            let blockBytes = type.byteCount(elements: type.blockSize)
            let at = blockBytes + (type == .q6_K ? 208 : 0)   // the second block's scale
            if type == .f32 { data.replaceSubrange(4..<8, with: [0, 0, 0xC0, 0x7F]) } else { data.replaceSubrange(at..<(at + 2), with: [0x00, 0x7E]) }
            let found = ck_find_nonfinite(Int32(type.rawValue), data, Int64(n))
            _ = ck_dequantize_row(Int32(type.rawValue), data, &y, Int64(n))
            let firstBad = y.firstIndex { !$0.isFinite }
            XCTAssertNotNil(firstBad, "\(type)")
            XCTAssertEqual(found, Int64(firstBad.map { $0 / type.blockSize * type.blockSize } ?? -1), "\(type)")
        }
    }
}
