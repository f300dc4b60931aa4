@testable import Engine
import CKernels
import Foundation
import XCTest

/// Gemma 3 270M (base, Q4_K_M: the gemma3 architecture, Q5_0/Q4_K/Q6_K weights, a
/// SentencePiece vocabulary, local sliding-window layers) against llama.cpp's values in
/// Reference/gemma3_reference.json (made by Reference/make_gemma_reference.py).
final class GemmaTests: XCTestCase {
    static let model = try! Transformer(path: TestSupport.gemmaPath, threads: 2)
    static let tokenizer = try! Tokenizer(gguf: model.gguf)
    var model: Transformer { Self.model }
    var tokenizer: Tokenizer { Self.tokenizer }

    func reference() throws -> [String: Any] {
        try XCTUnwrap(TestSupport.referenceJSON("gemma3_reference.json") as? [String: Any])
    }

    /// llama-simple's greedy continuations, fed token by token on the exact float path: at
    /// every step llama.cpp's choice is this model's choice too, or within 0.1 logit of it (a
    /// near-tie, where the two programs' rounding may pick either). 24 steps per prompt.
    func testGreedyContinuationsMatchLlamaCpp() throws {
        model.fastPath = false
        defer { model.fastPath = true }
        let cases = try XCTUnwrap(try reference()["greedy"] as? [[String: String]])
        XCTAssertEqual(cases.count, 4)
        var steps = 0, exact = 0
        for c in cases {
            let prompt = try XCTUnwrap(c["prompt"]), expected = try XCTUnwrap(c["continuation"])
            let promptIds = tokenizer.encode(prompt), all = tokenizer.encode(prompt + expected)
            XCTAssertEqual(Array(all.prefix(promptIds.count)), promptIds, prompt)
            let cache = model.makeCache(capacity: 64)
            var logits = Array(model.prefill(tokenizer.leadingBOS + promptIds, cache: cache))
            for i in promptIds.count..<all.count {
                let id = all[i], best = logits.max()!
                XCTAssertGreaterThanOrEqual(logits[id], best - 0.1,
                                            "\(prompt) + \(tokenizer.decode(Array(all[promptIds.count..<i])).debugDescription): llama.cpp's \(tokenizer.decode([id]).debugDescription) trails by \(best - logits[id])")
                steps += 1
                if logits[id] == best { exact += 1 }
                logits = Array(model.forward(token: id, cache: cache))
            }
        }
        XCTAssertGreaterThanOrEqual(steps, 80)
        XCTAssertGreaterThanOrEqual(exact, steps - 4, "near-ties are rare: \(steps - exact) of \(steps)")
    }

    /// `scroll ppl --chunk 512` on Gemma within 1% of `llama-perplexity -c 512` on the same text.
    func testChunkedPerplexityMatchesLlamaPerplexity() throws {
        let ref = try XCTUnwrap(try reference()["perplexity"] as? [String: Any])
        let file = try XCTUnwrap(ref["file"] as? String), bytes = try XCTUnwrap(ref["bytes"] as? Int)
        let chunk = try XCTUnwrap(ref["chunk"] as? Int), chunks = try XCTUnwrap(ref["chunks"] as? Int)
        let expected = try XCTUnwrap(ref["ppl"] as? Double)
        let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: file)).prefix(bytes), as: UTF8.self)
        let tokens = Array(tokenizer.encode(text).prefix(chunk * chunks))
        XCTAssertEqual(tokens.count, chunk * chunks)
        let result = PerplexityEvaluator(model: model, policy: .dense(chunk))
            .evaluateChunks(tokens, chunk: chunk, bos: tokenizer.leadingBOS.first)
        XCTAssertEqual(result.perplexity, expected, accuracy: expected * 0.01, "llama-perplexity: \(expected)")
    }

    /// The local layers see their own last 512 positions, the same ones whether a token is
    /// decoded alone (stored first, then the slots of its span: a ring of 700 that has wrapped)
    /// or in a prefill chunk (every slot held, masked by position). 900 tokens of text, the
    /// last 300 both ways from the same state.
    func testLocalLayersSeeTheSameSpanDecodingAndInChunks() throws {
        XCTAssertEqual(model.config.localWindow, 512)
        XCTAssertEqual((0..<18).filter { !model.config.localLayers[$0] }, [5, 11, 17], "every sixth layer is global")
        let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: "/usr/share/common-licenses/GPL-3")), as: UTF8.self)
        let tokens = Array(tokenizer.encode(text).prefix(900))
        model.fastPath = false     // both ways the same float arithmetic
        defer { model.fastPath = true }
        let policy = CachePolicy(sinks: 4, window: 700)
        let chunked = model.makeCache(policy: policy), decoded = model.makeCache(policy: policy)
        model.prefill(Array(tokens[..<600]), cache: chunked)
        model.prefill(Array(tokens[..<600]), cache: decoded)
        let a = Array(model.prefill(Array(tokens[600...]), cache: chunked))
        var b: [Float] = []
        for t in tokens[600...] { b = Array(model.forward(token: t, cache: decoded)) }
        // A span of the whole window instead of 512 in decoding moved a logit by 15.9.
        let worst = zip(a, b).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(worst, 1e-3, "measured 3e-5")
        XCTAssertEqual(a.indices.max { a[$0] < a[$1] }, b.indices.max { b[$0] < b[$1] })
    }

    /// The long-context cache on Gemma: sinks + window + memory for the global layers, the
    /// local layers their own span. The memory keeps blocks for the three global layers only,
    /// and a session saved losslessly resumes bit for bit.
    func testStreamingCacheWithMemoryAndASessionRoundTrip() throws {
        var settings = MemorySettings()
        settings.topBlocks = 2
        let makeCache = { self.model.makeCache(policy: CachePolicy(sinks: 4, window: 512), memory: settings) }
        func generator(_ cache: KVCache) -> Generator {
            var s = SamplerSettings()
            s.temperature = 0
            return Generator(model: model, tokenizer: tokenizer, sampler: Sampler(settings: s), cache: cache)
        }
        let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: "/usr/share/common-licenses/GPL-3")), as: UTF8.self)
        let g = generator(makeCache())
        try g.feed(tokenizer.leadingBOS + Array(tokenizer.encode(text).prefix(800)))
        let memory = try XCTUnwrap(g.cache.memory)
        XCTAssertEqual(memory.layerCount, 3, "blocks for the global layers only")
        XCTAssertEqual(g.cache.memoryLayers.compactMap { $0 }, [0, 1, 2])
        XCTAssertEqual(g.cache.memoryLayers[5], 0)
        XCTAssertGreaterThanOrEqual(memory.blocks, 4, "the evicted tokens in blocks of 64")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("scroll-gemma-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("s").path
        let conversation = SessionConversation(messages: [], systemPrompt: nil, raw: true, sampler: g.sampler)
        try SessionFile.save(to: path, generator: g, conversation: conversation, encoding: .lossless, modelName: "gemma")
        let c = try SessionFile.load(from: path, model: model, tokenizer: tokenizer, freshCache: makeCache())
        let original = g.generate(maxTokens: 12).ids
        let originalLogits = Array(g.lastLogits!)
        let resumed = generator(makeCache())
        resumed.restore(cache: c.cache, history: c.history, logits: c.logits, sampler: c.conversation.restoredSampler)
        XCTAssertEqual(resumed.generate(maxTokens: 12).ids, original)
        XCTAssertTrue(Array(resumed.lastLogits!) == originalLogits, "logits bit for bit")
    }

    /// Gemma's Q5_0, Q4_K and Q6_K matrices have no int8 kernel of their own: the int8 path
    /// multiplies copies made at load (Q4_K as Q4_1X rows, Q5_0 as Q5_1X, Q6_K as Q6_0X), each weight
    /// within its type's bound of the file's (assertInt8CopyHoldsWeights).
    func testInt8CopiesOfQ5_0Q4_KAndQ6_KHoldTheWeights() throws {
        let layer = model.weights.layers[0]
        var seen: Set<GGMLType> = []
        for m in [layer.wq, layer.wo, layer.wDown, model.weights.layers[1].wDown] {
            seen.insert(m.type)
            let copy = try XCTUnwrap(m.int8Copy, "\(m.name) (\(m.type))")
            XCTAssertEqual(copy.type, ck_int8_copy_type(Int32(m.type.rawValue)))
            assertInt8CopyHoldsWeights(type: m.type, original: m.data, copy: copy.data, cols: m.cols,
                                       rows: Array(stride(from: 0, to: m.rows, by: 37)))
        }
        XCTAssertEqual(seen, [.q5_0, .q4_K, .q6_K])
    }

    /// The fast path (int8 activations; the int8 copies of Q5_0/Q4_K/Q6_K, Q8_0 rows for the
    /// output head) against the exact float path, decoding llama.cpp's continuations, measured
    /// as ModelTests measures SmolLM2's: the exact top-20 logits relative to the top one. Over
    /// 18 layers and these 40 steps that moved by up to 0.73 (measured); every choice that leads
    /// by more than twice the tolerance is the same.
    func testFastPathStaysNearTheFloatPath() throws {
        let cases = try XCTUnwrap(try reference()["greedy"] as? [[String: String]])
        let tolerance: Float = 1.0
        var worst: Float = 0
        for c in cases {
            let prompt = try XCTUnwrap(c["prompt"]), ids = tokenizer.leadingBOS + tokenizer.encode(prompt + c["continuation"]!)
            var runs: [[[Float]]] = []
            for fast in [false, true] {
                model.fastPath = fast
                let cache = model.makeCache(capacity: 64)
                runs.append(ids.prefix(10).map { Array(model.forward(token: $0, cache: cache)) })
            }
            model.fastPath = true
            for (exact, fast) in zip(runs[0], runs[1]) {
                let order = exact.indices.sorted { exact[$0] > exact[$1] }, top = order[0]
                for id in order.prefix(20) { worst = max(worst, abs((fast[id] - fast[top]) - (exact[id] - exact[top]))) }
                if exact[top] - exact[order[1]] > 2 * tolerance { XCTAssertEqual(fast.indices.max { fast[$0] < fast[$1] }, top, prompt) }
            }
        }
        print("fast path against the float path: worst relative top-20 logit error \(worst)")
        XCTAssertLessThan(worst, tolerance)
    }
}
