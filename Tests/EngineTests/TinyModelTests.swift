import Engine
import XCTest

/// Synthetic 2-layer models (Reference/make_tiny_models.py) cover what the default model
/// does not: qwen2 (Q/K/V biases, rotate-half RoPE), qwen3 (q/k norms), Llama 3's RoPE
/// frequency factors, an untied output head, and the F32, F16,
/// Q4_0, Q5_0, Q8_0, Q4_K and Q6_K types inside a forward pass. Logits at every position are
/// held to the script's float64 NumPy forward pass.
final class TinyModelTests: XCTestCase {
    func check(_ name: String, mode: ModelConfig.RopeMode, untied: Bool) throws {
        let json = try XCTUnwrap(TestSupport.referenceJSON("tiny/tiny_logits.json") as? [String: Any])
        let ref = try XCTUnwrap(json[name] as? [String: Any])
        let tokens = try XCTUnwrap(ref["tokens"] as? [Int])
        let expected = try XCTUnwrap(ref["logits"] as? [[Double]])
        let model = try Transformer(path: TestSupport.referenceURL("tiny/\(name).gguf").path, threads: 2)
        model.fastPath = false
        XCTAssertEqual(model.config.ropeMode, mode)
        XCTAssertEqual(model.weights.output.name, untied ? "output.weight" : "token_embd.weight")
        let cache = model.makeCache()
        var worst = 0.0
        for (pos, token) in tokens.enumerated() {
            let logits = model.forward(token: token, cache: cache)
            XCTAssertEqual(logits.count, expected[pos].count)
            for (i, e) in expected[pos].enumerated() {
                let diff = abs(Double(logits[i]) - e)
                worst = max(worst, diff)
                XCTAssertLessThan(diff, 1e-3 * max(1, abs(e)), "\(name) position \(pos) logit \(i)")
                if diff >= 1e-3 * max(1, abs(e)) { return }
            }
        }
        print("\(name): worst logit difference \(worst)")
    }

    func testTinyLlama() throws { try check("tiny-llama", mode: .normal, untied: true) }
    func testTinyQwen2() throws { try check("tiny-qwen2", mode: .neox, untied: true) }
    /// Qwen 3: q/k RMSNorm per head, no biases.
    func testTinyQwen3() throws { try check("tiny-qwen3", mode: .neox, untied: true) }
    /// Llama 3.x: RoPE frequency factors (without them the logits move by more than 0.05).
    func testTinyLlama3() throws { try check("tiny-llama3", mode: .normal, untied: true) }
}
