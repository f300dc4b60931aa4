@testable import Engine
import Foundation
import XCTest

/// The chat formats, rendered as the official templates render them (Llama 3's, Gemma's and
/// Mistral's model cards give these strings), on SmolLM2's vocabulary with each format's
/// special tokens added; and the format recognised from a template's text.
final class ChatTemplateTests: XCTestCase {
    static let specials = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                           "<start_of_turn>", "<end_of_turn>", "<bos>", "[INST]", "[/INST]", "</s>"]

    /// SmolLM2's tokens and merges plus the special tokens above, as control tokens.
    func tokenizer(adding names: [String] = specials, renaming renamed: Set<String> = []) throws -> (Tokenizer, Int) {
        let md = TestSupport.shared.model.gguf.metadata
        let tokens = try XCTUnwrap(md["tokenizer.ggml.tokens"]?.array?.compactMap(\.string)).map { renamed.contains($0) ? "<renamed " + $0 + ">" : $0 }
        let types = md["tokenizer.ggml.token_type"]?.array?.compactMap(\.int) ?? []
        let merges = md["tokenizer.ggml.merges"]?.array?.compactMap(\.string) ?? []
        let all = tokens + names
        let t = try Tokenizer(tokens: all, tokenTypes: types + names.map { _ in 3 }, merges: merges,
                              preTokenizer: try XCTUnwrap(PreTokenizer(ggufName: "smollm")),
                              bos: all.firstIndex(of: "<bos>"), eos: all.firstIndex(of: "</s>"))
        return (t, tokens.count)
    }

    /// Ids back to text, special tokens by name.
    func render(_ ids: [Int], _ t: Tokenizer, firstSpecial: Int) -> String {
        ids.map { $0 >= firstSpecial ? Self.specials[$0 - firstSpecial] : t.decode([$0]) }.joined()
    }

    func testFormatsRenderAsTheirTemplates() throws {
        let (t, first) = try tokenizer()
        let chat = [ChatMessage(role: .system, content: "Be brief."), ChatMessage(role: .user, content: "Hi"),
                    ChatMessage(role: .assistant, content: "Hello."), ChatMessage(role: .user, content: "Bye")]
        let expected: [ChatTemplate.Format: String] = [
            .llama3: "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                + "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                + "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            .gemma: "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
                + "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n",
            .mistral: "<bos>[INST] Be brief.\n\nHi [/INST]Hello.</s>[INST] Bye [/INST]",
        ]
        for (format, text) in expected {
            let template = try ChatTemplate(tokenizer: t, templateSource: nil, format: format)
            XCTAssertEqual(render(template.encode(chat), t, firstSpecial: first), text, format.rawValue)
        }
        let llama3 = try ChatTemplate(tokenizer: t, templateSource: nil, format: .llama3)
        XCTAssertEqual(llama3.stopTokens, [first + 3], "a Llama 3 reply ends at <|eot_id|>")
    }

    func testFormatIsRecognisedFromTheTemplateAndTheVocabulary() throws {
        let (t, _) = try tokenizer()
        XCTAssertEqual(ChatTemplate.format(tokenizer: t, templateSource: "{{ '<|start_header_id|>' + message['role'] }}"), .llama3)
        XCTAssertEqual(ChatTemplate.format(tokenizer: t, templateSource: "{{ '<start_of_turn>' + role }}"), .gemma)
        XCTAssertEqual(ChatTemplate.format(tokenizer: t, templateSource: "{{ '[INST] ' + content + ' [/INST]' }}"), .mistral)
        XCTAssertEqual(ChatTemplate.format(tokenizer: t, templateSource: "{{ '<|im_start|>' + role }}"), .chatml)
        // SmolLM2 itself: ChatML by its template.
        let smol = TestSupport.shared
        XCTAssertEqual(ChatTemplate.format(tokenizer: smol.tokenizer, templateSource: smol.model.gguf.metadata["tokenizer.chat_template"]?.string), .chatml)
        // A template Scroll cannot read: the special tokens decide; mistral's markers may be
        // plain text, so they alone never make a chat model.
        let (plain, _) = try tokenizer(adding: [])
        XCTAssertEqual(ChatTemplate.format(tokenizer: plain, templateSource: "{{ unknown }}"), .chatml, "SmolLM2's vocabulary has the ChatML tokens")
        let (base, _) = try tokenizer(adding: ["[INST]", "[/INST]"], renaming: ["<|im_start|>", "<|im_end|>"])
        XCTAssertNil(ChatTemplate.format(tokenizer: base, templateSource: "{{ unknown }}"))
        XCTAssertEqual(ChatTemplate.format(tokenizer: base, templateSource: "{{ '[INST] ' + content }}"), .mistral)
        // No template at all: a base model, whatever its vocabulary holds (Gemma 3 270M base
        // has the Gemma turn tokens).
        XCTAssertNil(ChatTemplate.format(tokenizer: plain, templateSource: nil))
        let gemma = try Tokenizer(gguf: GGUFFile(path: TestSupport.gemmaPath))
        XCTAssertNotNil(gemma.id(of: "<start_of_turn>"))
        XCTAssertNil(ChatTemplate.format(tokenizer: gemma, templateSource: nil))
    }
}
