/// One message of a conversation.
public struct ChatMessage: Equatable, Codable {
    public enum Role: String, Codable { case system, user, assistant }
    public var role: Role
    public var content: String
    public init(role: Role, content: String) { self.role = role; self.content = content }
}

/// The chat formats Scroll writes, each as the model's own Jinja template renders it (special
/// tokens placed by id, message text encoded as plain text):
///
///     chatml   <|im_start|>{role}\n{content}<|im_end|>\n …  <|im_start|>assistant\n
///              (SmolLM2, Qwen 2.5 and 3)
///     llama3   <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|> …
///              <|start_header_id|>assistant<|end_header_id|>\n\n
///     gemma    <bos><start_of_turn>user\n{content}<end_of_turn>\n …  <start_of_turn>model\n
///              (no system role: the system text opens the first user turn, as Gemma's template does)
///     mistral  <s>[INST] {content} [/INST]{reply}</s> …  (no system role, as gemma)
///
/// The format is recognised from the GGUF's `tokenizer.chat_template` and the special tokens
/// the vocabulary has; `--template NAME` overrides it. When a ChatML conversation has no
/// system message, SmolLM2's template inserts its default one; that text is read from the
/// GGUF's template so another ChatML model gets its own.
public struct ChatTemplate {
    public enum Format: String, CaseIterable, Codable {
        case chatml, llama3, gemma, mistral
    }

    public let format: Format
    public let defaultSystemPrompt: String?
    /// Tokens that end a reply besides the vocabulary's end of text (<|eot_id|>, <end_of_turn>).
    public let stopTokens: Set<Int>
    private let tokenizer: Tokenizer
    private let special: [String: Int]

    /// The tokens each format needs by id.
    static func tokens(of format: Format) -> [String] {
        switch format {
        case .chatml: return ["<|im_start|>", "<|im_end|>"]
        case .llama3: return ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        case .gemma: return ["<start_of_turn>", "<end_of_turn>"]
        case .mistral: return []
        }
    }

    /// The format a model chats in: its template's, among those its vocabulary has the tokens
    /// for; nil when the file has no template (a base model: it continues text). A base model's
    /// vocabulary may still hold a family's turn tokens: Gemma 3 270M base has
    /// <start_of_turn>, and asked in that format it answered "mendatang" over and over.
    public static func format(tokenizer: Tokenizer, templateSource: String?) -> Format? {
        guard let source = templateSource else { return nil }
        let fits = Format.allCases.filter { f in tokens(of: f).allSatisfy { tokenizer.id(of: $0) != nil } }
        let marks: [(Format, String)] = [(.chatml, "<|im_start|>"), (.llama3, "<|start_header_id|>"),
                                         (.gemma, "<start_of_turn>"), (.mistral, "[INST]")]
        if let (f, _) = marks.first(where: { source.contains($0.1) && fits.contains($0.0) }) { return f }
        // A template Scroll cannot read: the special tokens alone, never mistral's plain-text
        // markers.
        return fits.first { $0 != .mistral }
    }

    public init(tokenizer: Tokenizer, templateSource: String?, format requested: Format? = nil) throws {
        guard let format = requested ?? Self.format(tokenizer: tokenizer, templateSource: templateSource) else {
            throw EngineError.invalidArgument("the model has no chat template Scroll knows (\(Format.allCases.map(\.rawValue).joined(separator: ", "))); use --raw")
        }
        var special: [String: Int] = [:]
        for name in Self.tokens(of: format) {
            guard let id = tokenizer.id(of: name) else {
                throw EngineError.invalidArgument("the model has no \(name) token for the \(format.rawValue) template")
            }
            special[name] = id
        }
        self.format = format
        self.tokenizer = tokenizer
        self.special = special
        stopTokens = Set(["<|eot_id|>", "<end_of_turn>", "<|im_end|>"].compactMap { special[$0] })
        defaultSystemPrompt = format == .chatml ? templateSource.flatMap(Self.defaultSystemPrompt(inTemplate:)) : nil
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

    /// What opens the conversation, before its first turn (the BOS these formats write).
    public var prefix: [Int] {
        switch format {
        case .chatml: return []
        case .llama3: return [special["<|begin_of_text|>"]!]
        case .gemma, .mistral: return tokenizer.bos.map { [$0] } ?? []
        }
    }

    /// What opens a turn of `role`, up to its text.
    public func head(_ role: ChatMessage.Role) -> [Int] {
        switch format {
        case .chatml: return [special["<|im_start|>"]!] + tokenizer.encode(role.rawValue + "\n")
        case .llama3: return [special["<|start_header_id|>"]!] + tokenizer.encode(role.rawValue) + [special["<|end_header_id|>"]!] + tokenizer.encode("\n\n")
        case .gemma: return [special["<start_of_turn>"]!] + tokenizer.encode(role == .assistant ? "model\n" : "user\n")
        case .mistral: return role == .assistant ? [] : marker("[INST]") + tokenizer.encode(" ")
        }
    }

    /// What closes a turn of `role`, after its text.
    public func tail(_ role: ChatMessage.Role) -> [Int] {
        switch format {
        case .chatml: return [special["<|im_end|>"]!] + tokenizer.encode("\n")
        case .llama3: return [special["<|eot_id|>"]!]
        case .gemma: return [special["<end_of_turn>"]!] + tokenizer.encode("\n")
        case .mistral: return role == .assistant ? (tokenizer.eos.map { [$0] } ?? []) : tokenizer.encode(" ") + marker("[/INST]")
        }
    }

    /// Mistral's markers: a token of their own in newer vocabularies, text in older ones.
    private func marker(_ text: String) -> [Int] { tokenizer.id(of: text).map { [$0] } ?? tokenizer.encode(text) }

    /// Whether the format has a system role (gemma and mistral put the system text at the
    /// start of the first user turn).
    public var hasSystemRole: Bool { format == .chatml || format == .llama3 }

    /// Token ids of the whole conversation, ready for the assistant's reply when
    /// `addGenerationPrompt`.
    public func encode(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) -> [Int] {
        var all = messages
        if all.first?.role != .system, let system = defaultSystemPrompt {
            all.insert(ChatMessage(role: .system, content: system), at: 0)
        }
        if !hasSystemRole, all.first?.role == .system {
            let system = all.removeFirst().content
            if let i = all.firstIndex(where: { $0.role == .user }) { all[i].content = system + "\n\n" + all[i].content }
        }
        var ids = prefix
        for m in all { ids += encodeTurn(m) }
        if addGenerationPrompt { ids += head(.assistant) }
        return ids
    }

    /// One turn: its head, its text, its tail.
    public func encodeTurn(_ m: ChatMessage) -> [Int] {
        head(m.role) + tokenizer.encode(m.content) + tail(m.role)
    }
}
