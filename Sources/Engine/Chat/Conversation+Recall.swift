import Foundation

// Recall by words, once per question: the passages of earlier text a question names are read
// again, as fresh tokens, right before it (PassageIndex finds them; the block memory's
// attention recall keeps running beside it).
extension Conversation {
    /// A passage read again: why it was chosen, and the stream range it was read from.
    public struct ReadAgain {
        public let passage: PassageIndex.Passage
        public let source: Range<Int>
    }

    /// How much of a passage about a document is read again: its best sentence and the rest
    /// of its paragraph within this many tokens. The less, the better this model used it
    /// (`scroll needle`, 20 facts in 8K-token documents: 14/20 with 128 tokens ending at the
    /// fact's sentence, 16–18/20 with 32, 18–19/20 with the sentence alone; docs/recall.md).
    public static let focusedPassageTokens = 32

    /// Passages of earlier text that `question` is about, as tokens to read right before it
    /// (their own token ids, each followed by a blank line), and noted as copies so that the
    /// index never finds them again.
    ///
    /// Budget. When the conversation holds a document (piped, /file, or any user turn longer
    /// than the window), questions are about it: passages found by any shared word anywhere
    /// before the question, in the window too (a fact 900 tokens back is as lost to this model
    /// as an evicted one, and one 200 tokens back was still missed when asked in other
    /// words), each cut to its best sentence (`PassageIndex.focus`), up to half the window in
    /// all. In a plain chat recent turns matter more: up to a quarter of the window, only
    /// evicted text, and only passages holding at least half of the question's word weight,
    /// so a turn that names nothing from long ago reads nothing; they are read whole (a turn
    /// is its own context). Nothing is read from `excluding`.
    func recallPassages(for question: String, document: Bool, excluding: Range<Int>? = nil) -> [Int] {
        lastPassages = []
        guard let index = passages, let window = generator.cache.policy.window else { return [] }
        let history = generator.history, now = generator.cache.tokensSeen
        lastRecallPosition = now
        index.catchUp(history: history, end: now, tokenizer: generator.tokenizer)
        let chosen = document
            ? index.passages(for: question, budget: window / 2, before: now, excluding: excluding)
            : index.passages(for: question, budget: window / 4, minCoverage: 0.5, before: now - window, excluding: excluding)
        var ids: [Int] = []
        let gap = generator.tokenizer.encode("\n\n")
        // As they were, control tokens included: with <|im_start|>/<|im_end|> dropped, a chat
        // asking about its first message ~5K tokens back answered the passage instead of the
        // question, or went on with "user\n…" after the answer (scripts/chat-recall.sh, three
        // texts: 3/3 as they were, 1/3 as a "User: …" transcript).
        // A document question reads each passage's best sentence, the one holding most of the
        // question's word weight last, nearest the question.
        let read: [(passage: PassageIndex.Passage, range: Range<Int>)] = document
            ? chosen.enumerated().map { ($0.offset, $0.element, index.focus($0.element, question: question, history: history, end: now,
                                                                          tokenizer: generator.tokenizer, budget: Self.focusedPassageTokens,
                                                                          excluding: excluding)) }
                .sorted { ($0.2.weight, $0.0) < ($1.2.weight, $1.0) }.map { ($0.1, $0.2.range) }
            : chosen.map { ($0, index.tokens(of: $0, history: history, end: now, tokenizer: generator.tokenizer)) }
        for (p, r) in read {
            let start = generator.cache.tokensSeen + ids.count
            ids += history[r]
            index.noteCopy(start ..< start + r.count)
            ids += gap
            lastPassages.append(ReadAgain(passage: p, source: r))
        }
        return ids
    }
}
