import Foundation

// /undo and /retry. Each exchange (a question and its reply, or a document read in) starts
// with a mark of the whole state (Generator.mark: cache, block memory, tokens, logits, RNG)
// and the conversation's own (messages, where the document ends, the passage index), so that
// undoing it puts everything back as it was, bit for bit, even when it pushed window tokens
// into the block memory. A retry undoes the last exchange and sends its message again with
// the RNG going on, so the new reply is a new draw (at temp 0 it is the same reply).
extension Conversation {
    /// What an exchange was: what /retry sends again.
    public enum Sent: Equatable {
        case reply(text: String, document: String?)
        case document(name: String)
    }

    /// One exchange as it began.
    struct Exchange {
        let mark: Generator.Mark
        let sent: Sent
        let messages: Int
        let documentEnd: Int?
        let passageUnits: Int
    }

    /// Bytes the marks may hold in all: rows a long document pushed out of the window (up to
    /// one window per exchange, 47 MB at the default f32 window of 1024), the block being
    /// filled, the scorer and the logits. The oldest exchanges stop being undoable beyond it;
    /// the last one always stays.
    public static let undoBudget = 256 << 20

    /// Exchanges that can be undone.
    public var undoableExchanges: Int { exchanges.count }
    /// What the last exchange that can be undone sent.
    public var lastSent: Sent? { exchanges.last?.sent }

    func beginExchange(_ sent: Sent) {
        guard keepsUndo else { return }
        exchanges.append(Exchange(mark: generator.mark(), sent: sent, messages: messages.count, documentEnd: documentEnd,
                                  passageUnits: passages?.units ?? 0))
    }

    /// Forgets the oldest exchanges while the marks hold more than `undoBudget`.
    func endExchange() {
        while exchanges.count > 1, exchanges.reduce(0, { $0 + $1.mark.cache.bytes }) > Self.undoBudget {
            generator.cache.forget(exchanges.removeFirst().mark.cache)
        }
    }

    /// Drops the last exchange: the conversation, cache, block memory and RNG as they were
    /// before it. Returns what the exchange sent (nil: nothing to undo).
    @discardableResult
    public func undo() -> Sent? {
        guard let last = exchanges.last else { return nil }
        rewind(to: last, keepingRNG: false)
        return last.sent
    }

    /// A new reply to the last message: the last exchange undone, then its message sent again,
    /// the RNG going on from where it was. Nil when the last exchange is not a question.
    public func retry(maxTokens: Int, shouldStop: @escaping () -> Bool = { false },
                      events: (ConversationEvent) -> Void) throws -> ReplyStats? {
        guard let last = exchanges.last, case .reply(let text, let document) = last.sent else { return nil }
        rewind(to: last, keepingRNG: true)
        return try reply(to: text, document: document, maxTokens: maxTokens, shouldStop: shouldStop, events: events)
    }

    private func rewind(to exchange: Exchange, keepingRNG: Bool) {
        exchanges.removeLast()
        let start = exchange.mark.cache
        precondition(generator.cache.canRewind(to: start))
        generator.rewind(to: exchange.mark, keepingRNG: keepingRNG)
        let n = generator.history.count
        messages.removeSubrange(exchange.messages...)
        documentEnd = exchange.documentEnd
        passages?.truncate(units: exchange.passageUnits, copiesBefore: n)
        lastPassages = []
        lastRecallPosition = nil
        // A session saved after the exchange holds tokens that are gone: the next save is whole.
        if let saved = lastSave, saved.tokens > n { lastSave = nil }
    }
}
