/// One message of a conversation.
public struct ChatMessage: Equatable, Codable {
    public enum Role: String, Codable { case system, user, assistant }
    public var role: Role
    public var content: String
    public init(role: Role, content: String) { self.role = role; self.content = content }
}

/// ChatML, the template of SmolLM2 and Qwen2 (their GGUF `tokenizer.chat_template`):
///
///     <|im_start|>{role}\n{content}<|im_end|>\n     for each message
///     <|im_start|>assistant\n                       to start the reply
///
/// When the conversation has no system message, SmolLM2's template inserts its default one;
/// that text is read from the GGUF's template so another ChatML model gets its own.
public struct ChatTemplate {
    public let imStart: Int
    public let imEnd: Int
    public let defaultSystemPrompt: String?
    private let tokenizer: Tokenizer

    /// Whether the tokenizer has the tokens this template needs (a model without them runs
    /// as a plain completion).
    public static func isSupported(by tokenizer: Tokenizer) -> Bool {
        tokenizer.id(of: "<|im_start|>") != nil && tokenizer.id(of: "<|im_end|>") != nil
    }

    public init(tokenizer: Tokenizer, templateSource: String?) throws {
        guard let start = tokenizer.id(of: "<|im_start|>"), let end = tokenizer.id(of: "<|im_end|>") else {
            throw EngineError.invalidArgument("the model has no ChatML tokens (<|im_start|>, <|im_end|>); use --raw")
        }
        self.tokenizer = tokenizer
        imStart = start
        imEnd = end
        defaultSystemPrompt = templateSource.flatMap(Self.defaultSystemPrompt(inTemplate:))
    }

    /// The text between `<|im_start|>system\n` and `<|im_end|>` in a Jinja ChatML template,
    /// when the template writes a fixed system message.
    static func defaultSystemPrompt(inTemplate t: String) -> String? {
        guard let open = t.range(of: "<|im_start|>system\n"),
              let close = t.range(of: "<|im_end|>", range: open.upperBound..<t.endIndex) else { return nil }
        let text = String(t[open.upperBound..<close.lowerBound])
        // A template that splices in the user's system message ({{ message['content'] }})
        // has no fixed default.
        return text.contains("{{") || text.contains("{%") ? nil : text
    }

    /// Token ids of the whole conversation, ready for the assistant's reply. Special tokens
    /// are placed by id; message text is encoded as plain text.
    public func encode(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) -> [Int] {
        var all = messages
        if all.first?.role != .system, let system = defaultSystemPrompt {
            all.insert(ChatMessage(role: .system, content: system), at: 0)
        }
        var ids: [Int] = []
        for m in all { ids += encodeTurn(m) }
        if addGenerationPrompt { ids += [imStart] + tokenizer.encode("assistant\n") }
        return ids
    }

    /// One turn: `<|im_start|>{role}\n{content}<|im_end|>\n`.
    public func encodeTurn(_ m: ChatMessage) -> [Int] {
        [imStart] + tokenizer.encode("\(m.role.rawValue)\n\(m.content)") + [imEnd] + tokenizer.encode("\n")
    }
}
