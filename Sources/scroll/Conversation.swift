import Engine
import Foundation

/// A chat over one generator: user turns go in through the chat template (or as plain text
/// with --raw), replies stream out, and every turn stays in the cache for the next.
final class Conversation {
    let generator: Generator
    let template: ChatTemplate?
    private(set) var systemPrompt: String?
    private(set) var messages: [ChatMessage] = []
    let raw: Bool

    init(model: Transformer, tokenizer: Tokenizer, cache: KVCache,
         sampling: SamplerSettings, systemPrompt: String?, raw: Bool, templateSource: String?) throws {
        generator = Generator(model: model, tokenizer: tokenizer, sampler: Sampler(settings: sampling), cache: cache)
        template = raw ? nil : try ChatTemplate(tokenizer: tokenizer, templateSource: templateSource)
        self.systemPrompt = systemPrompt
        self.raw = raw
    }

    /// What a reply cost.
    struct ReplyStats {
        var reason = Generator.StopReason.maxTokens
        var promptTokens = 0
        var promptSeconds = 0.0
        var tokens = 0
        var seconds = 0.0
        /// Prompt tokens left unread when reading was stopped (Ctrl-C); 0 when all were read.
        var unread = 0
    }

    /// Feeds the user's turn and streams the reply through `onText` (return false to stop).
    /// `progress` sees (tokens read, tokens to read) while a long turn is read; `shouldStop`
    /// returning true while it is read ends the turn there, with no reply (`unread` > 0).
    @discardableResult
    func reply(to text: String, maxTokens: Int, progress: ((Int, Int) -> Void)? = nil,
               shouldStop: (() -> Bool)? = nil, onText: (String) -> Bool) throws -> ReplyStats {
        let user = ChatMessage(role: .user, content: text)
        var ids = userTurn(user)
        if template != nil { ids += [template!.imStart] + generator.tokenizer.encode("assistant\n") }
        var stats = ReplyStats(promptTokens: ids.count)
        let t0 = Date()
        let read = try feed(ids, progress: progress, shouldStop: shouldStop)
        messages.append(user)
        stats.promptSeconds = Date().timeIntervalSince(t0)
        guard read == ids.count else {
            stats.unread = ids.count - read
            stats.reason = .interrupted
            try closeTurn()
            return stats
        }
        var replyText = ""
        let t1 = Date()
        let (out, reason) = generator.generate(maxTokens: maxTokens) { piece in
            replyText += piece
            return onText(piece)
        }
        stats.seconds = Date().timeIntervalSince(t1)
        stats.tokens = out.count
        stats.reason = reason
        if template != nil { messages.append(ChatMessage(role: .assistant, content: replyText)) }
        try closeTurn()
        return stats
    }

    /// Ends the open turn in the cache (a reply, or a user turn whose reading was stopped)
    /// so the next user turn follows ChatML.
    private func closeTurn() throws {
        guard let template else { return }
        let close = [template.imEnd] + generator.tokenizer.encode("\n")
        if generator.remainingCapacity >= close.count { try generator.feed(close) }
    }

    /// Reads a document into the conversation without a reply (/file, or piped input kept in
    /// a session): a user turn holding it and a one-line assistant acknowledgement, so the
    /// next question follows ChatML. Returns the tokens read and the tokens there were; when
    /// `shouldStop` ended the reading early, what was read stays, with its turn closed.
    @discardableResult
    func addDocument(_ text: String, name: String, progress: ((Int, Int) -> Void)? = nil,
                     shouldStop: (() -> Bool)? = nil) throws -> (read: Int, total: Int) {
        let user = ChatMessage(role: .user, content: "Here is \(name):\n\n\(text)")
        let turn = userTurn(user)
        let ack = ChatMessage(role: .assistant, content: "I have read \(name).")
        let ids = turn + (template.map { $0.encodeTurn(ack) } ?? [])
        let read = try feed(ids, progress: progress, shouldStop: shouldStop)
        messages.append(user)
        if read < ids.count && read != turn.count { try closeTurn() }
        if template != nil && read == ids.count { messages.append(ack) }
        return (read, ids.count)
    }

    /// A user turn's tokens (the whole prompt with the system message on the first turn).
    private func userTurn(_ user: ChatMessage) -> [Int] {
        guard let template else { return generator.tokenizer.encode(user.content) }
        if messages.isEmpty {
            // First turn: the system message (ours or the model's default) comes first.
            let system = systemPrompt.map { [ChatMessage(role: .system, content: $0)] } ?? []
            messages = system
            return template.encode(system + [user], addGenerationPrompt: false)
        }
        return template.encodeTurn(user)
    }

    private func feed(_ ids: [Int], progress: ((Int, Int) -> Void)?, shouldStop: (() -> Bool)?) throws -> Int {
        let cache = generator.cache
        if let window = cache.policy.window, ids.count > cache.capacity {
            // No silent truncation: say once how a long input is held.
            let held = cache.memory != nil
                ? "the rest goes to block memory, from which the most relevant passages are recalled (--no-memory turns this off)"
                : "the rest is dropped (block memory is off)"
            Terminal.note("scroll: the input (\(ids.count) tokens) is longer than the window: the model attends to the first \(cache.policy.sinks) tokens and the last \(window); \(held)")
        }
        return try generator.feed(ids, progress: { progress?($0, ids.count) }, shouldStop: shouldStop)
    }

    /// Starts over with a new system prompt (nil: the model's default).
    func setSystemPrompt(_ prompt: String?) {
        reset()
        systemPrompt = prompt
    }

    /// Saves the whole state to `path` (atomically; the previous file survives any failure).
    func save(to path: String, encoding: SessionFile.KVEncoding) throws {
        try SessionFile.save(to: path, generator: generator,
                             conversation: SessionConversation(messages: messages, systemPrompt: systemPrompt, raw: raw,
                                                               sampler: generator.sampler),
                             encoding: encoding, modelName: (generator.model.gguf.path as NSString).lastPathComponent)
    }

    /// Replaces the state with the session at `path`; on any error the conversation is as it was.
    func load(from path: String) throws -> SessionHeader {
        let model = generator.model
        let contents = try SessionFile.load(from: path, model: model, tokenizer: generator.tokenizer,
                                            freshCache: model.makeCache(like: generator.cache))
        guard contents.conversation.raw == raw else {
            throw EngineError.invalidArgument("cannot load session \(path): it was a \(contents.conversation.raw ? "--raw" : "chat") conversation; this one is \(raw ? "--raw" : "a chat")")
        }
        generator.restore(cache: contents.cache, history: contents.history, logits: contents.logits,
                          sampler: contents.conversation.restoredSampler)
        messages = contents.conversation.messages
        systemPrompt = contents.conversation.systemPrompt
        return contents.header
    }

    func reset() {
        generator.reset()
        messages.removeAll()
    }
}
