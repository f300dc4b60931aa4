import Engine
import XCTest

/// The sinks + window cache policy (KVCache.swift): slots, eviction order, positions, and
/// agreement with dense attention while the stream fits.
final class CacheTests: XCTestCase {
    static let tokens = [5, 17, 300, 42, 7, 255, 100, 383, 64, 12, 99, 1, 250, 33, 77, 200]

    func tinyModel(_ name: String = "tiny-llama") throws -> Transformer {
        let model = try Transformer(path: TestSupport.referenceURL("tiny/\(name).gguf").path, threads: 2)
        model.fastPath = false
        return model
    }

    func testSlotsRingAndPositions() throws {
        let cache = KVCache(layerCount: 1, kvHeadCount: 1, headDim: 2, policy: CachePolicy(sinks: 4, window: 8))
        XCTAssertEqual(cache.capacity, 12)
        XCTAssertEqual((0..<4).map(cache.slot(ofPosition:)), [0, 1, 2, 3], "sinks keep their slots")
        XCTAssertEqual((4..<12).map(cache.slot(ofPosition:)), Array(4..<12))
        XCTAssertEqual((12..<21).map(cache.slot(ofPosition:)), [4, 5, 6, 7, 8, 9, 10, 11, 4], "the window wraps around")
        XCTAssertEqual(cache.sinkQueryPosition(5), 5, "before eviction a query sits at its own position")
        XCTAssertEqual(cache.sinkQueryPosition(1_000_000), 11, "after: at the end of the cache, never beyond")
        XCTAssertEqual(cache.oldestWindowPosition(after: 100), 93)
        XCTAssertEqual(cache.remaining, Int.max)
        let dense = KVCache(layerCount: 1, kvHeadCount: 1, headDim: 2, policy: .dense(16))
        XCTAssertEqual((0..<16).map(dense.slot(ofPosition:)), Array(0..<16))
        XCTAssertEqual(dense.remaining, 16)
    }

    /// Each new token past capacity evicts the oldest window token, in order, once per layer,
    /// and the sinks are never evicted.
    func testEvictionOrder() throws {
        let model = try tinyModel()
        let cache = model.makeCache(policy: CachePolicy(sinks: 2, window: 4))
        var evicted: [Int: [Int]] = [:]
        cache.onEvict = { evicted[$0.layer, default: []].append($0.position) }
        for t in Self.tokens.prefix(12) { model.forward(token: t, cache: cache) }
        XCTAssertEqual(evicted[0], [2, 3, 4, 5, 6, 7])
        XCTAssertEqual(evicted[1], [2, 3, 4, 5, 6, 7])
        XCTAssertEqual(cache.count, 6)
        XCTAssertEqual(cache.tokensSeen, 12)
    }

    /// While the stream fits in sinks + window, the policy is dense attention: same logits,
    /// token by token and through batched prefill.
    func testEqualsDenseWhileTheStreamFits() throws {
        let model = try tinyModel()
        let dense = model.makeCache(capacity: 64)
        let windowed = model.makeCache(policy: CachePolicy(sinks: 4, window: 12))
        for t in Self.tokens {
            let a = Array(model.forward(token: t, cache: dense))
            let b = Array(model.forward(token: t, cache: windowed))
            XCTAssertEqual(a, b)
        }
        let batched = model.makeCache(policy: CachePolicy(sinks: 4, window: 12))
        let viaPrefill = Array(model.prefill(Self.tokens, cache: batched))
        let reference = Array(model.forward(token: Self.tokens.last!, cache: model.makeCache(capacity: 1)))
        XCTAssertNotEqual(viaPrefill, reference, "sanity: context matters")
        let sequential = model.makeCache(policy: CachePolicy(sinks: 4, window: 12))
        var last: [Float] = []
        for t in Self.tokens { last = Array(model.forward(token: t, cache: sequential)) }
        for i in 0..<last.count { XCTAssertEqual(viaPrefill[i], last[i], accuracy: 1e-4) }
    }

    /// Past the window, batched prefill (which stores and attends token by token inside a
    /// chunk) gives what feeding one token at a time gives.
    func testPrefillThroughTheWindowMatchesTokenByToken() throws {
        let model = try tinyModel()
        let policy = CachePolicy(sinks: 2, window: 5)
        let a = model.makeCache(policy: policy), b = model.makeCache(policy: policy)
        var last: [Float] = []
        for t in Self.tokens { last = Array(model.forward(token: t, cache: a)) }
        let batched = Array(model.prefill(Self.tokens, cache: b))
        for i in 0..<last.count { XCTAssertEqual(batched[i], last[i], accuracy: 1e-4) }
    }

    /// After eviction, logits at every step equal an independent float64 implementation of
    /// StreamingLLM's own scheme (pre-RoPE keys re-rotated to cache positions each step,
    /// Reference/reference_streaming.py), for both RoPE modes, with and without sinks.
    func testMatchesTheStreamingLLMReference() throws {
        let json = try XCTUnwrap(TestSupport.referenceJSON("tiny/tiny_streaming_logits.json") as? [String: [String: Any]])
        for name in ["tiny-llama", "tiny-qwen2"] {
            let model = try tinyModel(name)
            for (caseName, value) in try XCTUnwrap(json[name]) {
                let c = try XCTUnwrap(value as? [String: Any])
                let policy = CachePolicy(sinks: c["sinks"] as! Int, window: (c["window"] as! Int))
                let expected = try XCTUnwrap(c["logits"] as? [[Double]])
                let cache = model.makeCache(policy: policy)
                var worst = 0.0
                for (step, token) in (c["tokens"] as! [Int]).enumerated() {
                    let logits = model.forward(token: token, cache: cache)
                    for (i, e) in expected[step].enumerated() { worst = max(worst, abs(Double(logits[i]) - e)) }
                }
                XCTAssertLessThan(worst, 1e-3, "\(name) \(caseName)")
                print("\(name) \(caseName): worst logit difference against StreamingLLM's scheme \(worst)")
            }
        }
    }
}
