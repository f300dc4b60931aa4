import Engine
import XCTest

final class TokenizerTests: XCTestCase {
    var tokenizer: Tokenizer { TestSupport.shared.tokenizer }

    /// Ids identical to Hugging Face `tokenizers` on the whole corpus of
    /// Reference/tokenizer_vectors.json (made by Reference/make_tokenizer_vectors.py).
    func testMatchesHuggingFaceOnCorpus() throws {
        try checkCorpus("tokenizer_vectors.json", tokenizer)
    }

    /// The qwen2 pre-tokenizer, on the same vocabulary split with Qwen2's pattern in HF.
    func testQwen2PreTokenizerMatchesHuggingFace() throws {
        let t = tokenizer
        let merges = TestSupport.shared.model.gguf.metadata["tokenizer.ggml.merges"]?.array?.compactMap(\.string) ?? []
        let qwen = try Tokenizer(tokens: t.tokens, tokenTypes: t.tokenTypes, merges: merges, preTokenizer: .qwen2,
                                 bos: t.bos, eos: t.eos)
        try checkCorpus("tokenizer_vectors_qwen2.json", qwen)
    }

    /// Gemma 3's SentencePiece vocabulary (byte fallback, user-defined whitespace and HTML
    /// tokens cut out first) against llama.cpp's ids on Reference/gemma3_tokenizer_vectors.json
    /// (made by Reference/make_gemma_tokenizer_vectors.py with llama-tokenize).
    func testGemmaSentencePieceMatchesLlamaCpp() throws {
        let gemma = try Tokenizer(gguf: GGUFFile(path: TestSupport.gemmaPath))
        try checkCorpus("gemma3_tokenizer_vectors.json", gemma)
        XCTAssertEqual(gemma.leadingBOS, [2], "Gemma's file asks for a BOS before a text")
        XCTAssertEqual(gemma.stopTokens, [1, 106], "<eos> and <end_of_turn> end a reply")
        XCTAssertEqual(gemma.decode(gemma.encode("\u{2581}x  y\n\u{1}")), " x  y\n\u{1}", "a typed ▁ comes back as a space")
    }

    /// The llama3 (`llama-bpe`) pre-tokenizer: Qwen2's pattern with numbers in pieces of up to
    /// three digits, on the same vocabulary split with Llama 3's pattern in HF.
    func testLlama3PreTokenizerMatchesHuggingFace() throws {
        let t = tokenizer
        let merges = TestSupport.shared.model.gguf.metadata["tokenizer.ggml.merges"]?.array?.compactMap(\.string) ?? []
        let llama3 = try Tokenizer(tokens: t.tokens, tokenTypes: t.tokenTypes, merges: merges,
                                   preTokenizer: try XCTUnwrap(PreTokenizer(ggufName: "llama-bpe")), bos: t.bos, eos: t.eos)
        try checkCorpus("tokenizer_vectors_llama3.json", llama3)
        // This vocabulary has no multi-digit tokens, so the ids cannot tell the patterns
        // apart: the pieces can.
        let cases = try XCTUnwrap(TestSupport.referenceJSON("tokenizer_vectors_llama3.json") as? [[String: Any]])
        var checked = 0
        for c in cases {
            guard let pieces = c["pieces_b64"] as? [String], let raw = Data(base64Encoded: c["text_b64"] as? String ?? "") else { continue }
            let expected = pieces.map { String(decoding: Data(base64Encoded: $0)!, as: UTF8.self) }
            XCTAssertEqual(PreTokenizer.llama3.split(String(decoding: raw, as: UTF8.self)).map { String($0) }, expected, c["name"] as? String ?? "?")
            checked += 1
        }
        XCTAssertEqual(checked, cases.count)
        XCTAssertEqual(PreTokenizer.llama3.split("x 12345").map { String($0) }, ["x", " ", "123", "45"])
    }

    /// SentencePiece with `add_space_prefix = true`, as Llama 2 and Mistral files have it: a
    /// vocabulary-only file with Gemma's tokens and scores and that flag, against llama.cpp's
    /// ids for the same (Reference/make_gemma_tokenizer_vectors.py).
    func testSentencePieceWithASpacePrefixMatchesLlamaCpp() throws {
        var b = try GGUFBuilder(copying: GGUFFile(path: TestSupport.gemmaPath),
                                metadataWhere: { $0.hasPrefix("tokenizer.ggml.") }, tensors: false)
        b.set("general.architecture", .str("llama"))
        b.set("tokenizer.ggml.add_space_prefix", .bool(true))
        let path = try temporaryFile(b.build())
        let spm = try Tokenizer(gguf: GGUFFile(path: path))
        try checkCorpus("spm_space_prefix_tokenizer_vectors.json", spm)
        XCTAssertEqual(spm.encode("Hello").first.map { spm.tokens[$0] }, "\u{2581}Hello")
    }

    func checkCorpus(_ file: String, _ tokenizer: Tokenizer) throws {
        let cases = try XCTUnwrap(TestSupport.referenceJSON(file) as? [[String: Any]])
        XCTAssertGreaterThan(cases.count, 30)
        var failures = 0
        for c in cases {
            let name = c["name"] as? String ?? "?"
            let bytes = try XCTUnwrap(Data(base64Encoded: c["text_b64"] as? String ?? ""), name)
            let expected = try XCTUnwrap(c["ids"] as? [Int], name)
            let text = String(decoding: bytes, as: UTF8.self)
            let ids = tokenizer.encode(text)
            if ids != expected {
                failures += 1
                XCTFail("\(name): got \(ids.prefix(40)) expected \(expected.prefix(40))")
            }
            if let decoded = c["decoded_b64"] as? String, let d = Data(base64Encoded: decoded) {
                XCTAssertEqual(tokenizer.decode(ids), String(decoding: d, as: UTF8.self), "round trip of \(name)")
            }
        }
        XCTAssertEqual(failures, 0)
    }

    func testSpecialTokenTextStaysText() {
        let ids = tokenizer.encode("<|im_start|>")
        XCTAssertFalse(ids.contains(1), "typed special-token text must not become the control token")
        XCTAssertEqual(tokenizer.decode(ids), "<|im_start|>")
    }

    func testChatTemplateGoldenPromptIds() throws {
        let t = try ChatTemplate(tokenizer: tokenizer,
                                 templateSource: TestSupport.shared.model.gguf.metadata["tokenizer.chat_template"]?.string)
        XCTAssertEqual(t.defaultSystemPrompt, "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        let ids = t.encode([ChatMessage(role: .user, content: "What is the capital of France?")])
        XCTAssertEqual(ids, [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407,
                             19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198])
        // An explicit system message replaces the default one.
        let custom = t.encode([ChatMessage(role: .system, content: "Be brief."),
                               ChatMessage(role: .user, content: "Hi")])
        XCTAssertEqual(tokenizer.decode(custom), "system\nBe brief.\nuser\nHi\nassistant\n",
                       "control tokens decode to nothing; the rest is the ChatML text")
        XCTAssertEqual(custom.filter { $0 == 1 }.count, 3)
    }

    func testStreamingDetokenizerNeverSplitsACharacter() {
        let text = "Emoji 👩‍👩‍👧 and 漢字, café — done."
        let ids = tokenizer.encode(text)
        var detok = StreamingDetokenizer(tokenizer: tokenizer)
        var out = ""
        for id in ids {
            let piece = detok.push(id)
            XCTAssertFalse(piece.contains("\u{FFFD}"), "piece \(piece.debugDescription) holds a broken character")
            out += piece
        }
        out += detok.flush()
        XCTAssertEqual(out, text)
    }

    func testStreamingDetokenizerShowsBrokenBytes() {
        // A lone lead byte followed by ASCII is invalid: it is not held back forever.
        XCTAssertEqual(StreamingDetokenizerProbe.suffix([0x61, 0xE2]), 1)
        XCTAssertEqual(StreamingDetokenizerProbe.suffix([0xE2, 0x82]), 2)
        XCTAssertEqual(StreamingDetokenizerProbe.suffix([0xE2, 0x82, 0xAC]), 0)
        XCTAssertEqual(StreamingDetokenizerProbe.suffix([0xE0, 0x80]), 0, "overlong prefix is already invalid")
        XCTAssertEqual(StreamingDetokenizerProbe.suffix([0xF0, 0x9F, 0x98]), 3)
        XCTAssertEqual(StreamingDetokenizerProbe.suffix([0x80]), 0)
    }
}

@testable import Engine
enum StreamingDetokenizerProbe {
    static func suffix(_ b: [UInt8]) -> Int { StreamingDetokenizer.incompleteSuffixLength(b) }
}
