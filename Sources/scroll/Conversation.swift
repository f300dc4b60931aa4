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

    /// Feeds the user's turn and streams the reply through `onText` (return false to stop).
    @discardableResult
    func reply(to text: String, maxTokens: Int, onText: (String) -> Bool) throws -> Generator.StopReason {
        let tokenizer = generator.tokenizer
        var ids: [Int]
        if let template {
            let user = ChatMessage(role: .user, content: text)
            if messages.isEmpty {
                // First turn: the whole prompt, with the system message (ours or the model's default).
                let system = systemPrompt.map { [ChatMessage(role: .system, content: $0)] } ?? []
                ids = template.encode(system + [user])
                messages = system
            } else {
                ids = template.encodeTurn(user) + [template.imStart] + tokenizer.encode("assistant\n")
            }
            messages.append(user)
        } else {
            ids = tokenizer.encode(text)
        }
        if let window = generator.cache.policy.window, ids.count > generator.cache.capacity {
            // No silent truncation: say once how a long input is held.
            Terminal.note("scroll: the input (\(ids.count) tokens) is longer than the cache: the model sees the conversation's first \(generator.cache.policy.sinks) tokens and the last \(window) (--sinks, --window)")
        }
        try generator.feed(ids)
        var replyText = ""
        let (_, reason) = generator.generate(maxTokens: maxTokens) { piece in
            replyText += piece
            return onText(piece)
        }
        if let template {
            messages.append(ChatMessage(role: .assistant, content: replyText))
            // Close the assistant turn in the cache so the next user turn follows ChatML.
            let close = [template.imEnd] + tokenizer.encode("\n")
            if generator.remainingCapacity >= close.count { try generator.feed(close) }
        }
        return reason
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
