import Foundation

// A conversation saved to a session file and resumed from one (SessionFile does the format).
extension Conversation {
    /// Saves the whole state to `path` (atomically; the previous file survives any failure).
    /// `flags` are the command-line flags that rebuild this cache, kept in the header.
    public func save(to path: String, encoding: SessionFile.KVEncoding, flags: [String]) throws {
        lastSave = try SessionFile.save(to: path, generator: generator,
                                        conversation: SessionConversation(messages: messages, systemPrompt: systemPrompt, raw: raw,
                                                                          sampler: generator.sampler, rereadCopies: passages?.copies ?? [],
                                                                          documentEnd: documentEnd),
                                        encoding: encoding, modelName: (generator.model.gguf.path as NSString).lastPathComponent,
                                        flags: flags, after: lastSave)
    }

    /// Replaces the state with the session at `path`; on any error the conversation is as it
    /// was. A last save that was cut short is said as a notice.
    public func load(from path: String, events: (ConversationEvent) -> Void = { _ in }) throws -> SessionHeader {
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
        // The index is rebuilt from the tokens when the next question needs it.
        passages?.reset()
        for r in contents.conversation.rereadCopies ?? [] { passages?.noteCopy(r) }
        documentEnd = contents.conversation.documentEnd.flatMap { (0...contents.history.count).contains($0) ? $0 : nil }
        lastSave = contents.checkpoint
        exchanges.removeAll()
        if contents.interruptedSave {
            events(.notice("session \((path as NSString).lastPathComponent.escapingControls()): its last save was cut short (the process ended while saving); resumed from the save before it"))
        }
        lastPassages = []
        return contents.header
    }
}
