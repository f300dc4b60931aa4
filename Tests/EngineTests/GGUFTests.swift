import Engine
import XCTest

final class GGUFTests: XCTestCase {
    func testReadsTheDefaultModel() throws {
        let f = try GGUFFile(path: TestSupport.modelPath)
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.tensors.count, 272)
        XCTAssertEqual(f.metadata["tokenizer.ggml.tokens"]?.array?.count, 49152)
        XCTAssertEqual(f.metadata["tokenizer.ggml.merges"]?.array?.count, 48900)
        let c = try ModelConfig(gguf: f)
        XCTAssertEqual(c.architecture, "llama")
        XCTAssertEqual(c.layerCount, 30)
        XCTAssertEqual(c.embeddingLength, 576)
        XCTAssertEqual(c.feedForwardLength, 1536)
        XCTAssertEqual(c.headCount, 9)
        XCTAssertEqual(c.kvHeadCount, 3)
        XCTAssertEqual(c.headDim, 64)
        XCTAssertEqual(c.vocabSize, 49152)
        XCTAssertEqual(c.contextLength, 8192)
        XCTAssertEqual(c.ropeBase, 100000)
        XCTAssertEqual(c.rmsEpsilon, 1e-5, accuracy: 1e-9)
        XCTAssertEqual(c.ropeMode, .normal)
        XCTAssertEqual(f.tensors["token_embd.weight"]?.type, GGMLType.q8_0.rawValue)
        XCTAssertEqual(f.tensors["blk.0.ffn_down.weight"]?.dims, [1536, 576])
        XCTAssertNil(f.tensors["output.weight"], "SmolLM2 ties its output head to the embedding")
    }

    func testEveryMetadataValueType() throws {
        var b = GGUFBuilder()
        b.metadata = [
            ("u8", .u8(200)), ("i8", .i8(-5)), ("u16", .u16(60000)), ("i16", .i16(-300)),
            ("u32", .u32(4_000_000_000)), ("i32", .i32(-70000)), ("f32", .f32(1.5)), ("b", .bool(true)),
            ("s", .str("héllo")), ("u64", .u64(1 << 40)), ("i64", .i64(-(1 << 40))), ("f64", .f64(2.25)),
            ("arr", .array(typeCode: 4, [.u32(1), .u32(2), .u32(3)])),
            ("strs", .array(typeCode: 8, [.str("a"), .str("")])),
            ("nested", .array(typeCode: 9, [.array(typeCode: 0, [.u8(7)])])),
        ]
        for version: UInt32 in [2, 3] {
            b.version = version
            let f = try GGUFFile(path: try temporaryFile(b.build()))
            XCTAssertEqual(f.version, version)
            let m = f.metadata
            XCTAssertEqual(m["u8"], .uint8(200))
            XCTAssertEqual(m["i8"], .int8(-5))
            XCTAssertEqual(m["u16"], .uint16(60000))
            XCTAssertEqual(m["i16"], .int16(-300))
            XCTAssertEqual(m["u32"]?.int, 4_000_000_000)
            XCTAssertEqual(m["i32"]?.int, -70000)
            XCTAssertEqual(m["f32"]?.float, 1.5)
            XCTAssertEqual(m["b"]?.bool, true)
            XCTAssertEqual(m["s"]?.string, "héllo")
            XCTAssertEqual(m["u64"]?.int, 1 << 40)
            XCTAssertEqual(m["i64"]?.int, -(1 << 40))
            XCTAssertEqual(m["f64"]?.float, 2.25)
            XCTAssertEqual(m["arr"]?.array?.compactMap(\.int), [1, 2, 3])
            XCTAssertEqual(m["strs"]?.array?.compactMap(\.string), ["a", ""])
            XCTAssertEqual(m["nested"], .array([.array([.uint8(7)])]))
        }
    }

    func testTensorDataIsAlignedAndMapped() throws {
        var b = GGUFBuilder()
        let values: [Float] = [1, -2, 3.5, 4]
        b.tensors = [("t", [4], 0, values.flatMap { v in withUnsafeBytes(of: v) { Array($0) } })]
        let f = try GGUFFile(path: try temporaryFile(b.build()))
        let ptr = try f.data(of: f.tensors["t"]!)
        XCTAssertEqual((0..<4).map { ptr.load(fromByteOffset: $0 * 4, as: Float.self) }, values)
    }

    // MARK: errors: each is one clear error, never a crash

    func testMissingFile() {
        XCTAssertThrowsError(try GGUFFile(path: "/nonexistent/model.gguf")) {
            XCTAssertEqual($0 as? EngineError, .fileNotFound("/nonexistent/model.gguf"))
        }
    }

    func testNotAGGUF() throws {
        let path = try temporaryFile(Array("This is a text file, not a model.\n".utf8))
        XCTAssertThrowsError(try GGUFFile(path: path)) { XCTAssertEqual($0 as? EngineError, .notGGUF(path)) }
        let empty = try temporaryFile([])
        XCTAssertThrowsError(try GGUFFile(path: empty)) { XCTAssertEqual($0 as? EngineError, .notGGUF(empty)) }
    }

    func testWrongVersion() throws {
        var b = GGUFBuilder()
        b.version = 7
        let path = try temporaryFile(b.build())
        XCTAssertThrowsError(try GGUFFile(path: path)) {
            XCTAssertEqual($0 as? EngineError, .unsupportedGGUFVersion(path, 7))
        }
    }

    func testTruncatedModel() throws {
        // The real model cut at several points: inside the header, the vocabulary, the
        // tensor infos and the tensor data.
        let full = try Data(contentsOf: URL(fileURLWithPath: TestSupport.modelPath))
        for cut in [10, 300_000, 1_700_000, 50_000_000] {
            let path = try temporaryFile(Array(full.prefix(cut)))
            XCTAssertThrowsError(try Transformer(path: path), "cut at \(cut)") { error in
                guard case .truncated(let p, _)? = error as? EngineError else { return XCTFail("\(error)") }
                XCTAssertEqual(p, path)
            }
        }
    }

    func testUnsupportedArchitectureAndTensorType() throws {
        var b = GGUFBuilder()
        b.metadata = [("general.architecture", .str("mamba"))]
        let path = try temporaryFile(b.build())
        XCTAssertThrowsError(try Transformer(path: path)) {
            XCTAssertEqual($0 as? EngineError, .unsupportedArchitecture("mamba"))
        }
        var t = GGUFBuilder()
        t.tensors = [("q", [256], 11 /* Q3_K */, [UInt8](repeating: 0, count: 110))]
        let f = try GGUFFile(path: try temporaryFile(t.build()))
        XCTAssertThrowsError(try f.data(of: f.tensors["q"]!)) {
            XCTAssertEqual($0 as? EngineError, .unsupportedTensorType("q", 11))
            XCTAssertTrue("\($0)".contains("Q3_K"))
        }
    }

    func testHugeCountsAreRejected() throws {
        var bytes: [UInt8] = Array("GGUF".utf8) + [3, 0, 0, 0]
        bytes += [0, 0, 0, 0, 0, 0, 0, 0]                    // tensors
        bytes += [255, 255, 255, 255, 255, 255, 255, 127]    // metadata count
        let path = try temporaryFile(bytes)
        XCTAssertThrowsError(try GGUFFile(path: path)) {
            guard case .truncated? = $0 as? EngineError else { return XCTFail("\($0)") }
        }
    }
}
