import Foundation

/// Finds the evicted passages a question is about, by the words they share (BM25), so that
/// they can be read again right before the question.
///
/// Why words and not only attention. The block memory ranks blocks by the chunk's queries
/// against one representative key per block; that finds the passkey, whose needle is the only
/// sentence that differs from the filler, but in natural text every block differs and the
/// ranking picked the blocks formed while the window filled and unrelated passages over the
/// fact's (a 32K-token glossary with a code at depth 0.5: the fact's block was not among the
/// most picked). A question about a document names what it asks about — the blue door, the
/// lighthouse on Gull Island — and those rare words find the passage. And once found, a
/// passage is read again as fresh tokens just before the question, because this 135M model
/// uses a passage only when it is near: over the ~750 tokens around a fact it answers, over
/// ~2K it does not, and recalled keys sit a window away (Conversation does the reading).
///
/// Units are the block memory's blocks: `unit` tokens from stream position `origin` (the
/// sinks) on, so unit k is memory block k. The index is built from the token history as the
/// stream grows (`catchUp`), so a resumed session rebuilds it from its tokens; a question
/// asks only among the units that end before a given position (what has left the window,
/// or what is far enough back in it). Stream ranges that are re-read copies are not indexed: a
/// passage found once would otherwise be found twice. The tokens after the last whole unit are
/// indexed too, as an open unit that the next `catchUp` indexes again: a fact in a document's
/// last lines was in no unit, never read again, and the model went on with the document
/// instead of answering (8K needle, seed 401, the fact at depth 1).
///
/// Scoring is Okapi BM25 (Robertson & Zaragoza 2009, k1 = 1.2, b = 0.75) over lower-cased,
/// lightly stemmed words without stop words. Cost per question: the postings of its words.
public final class PassageIndex {
    public let unit: Int
    public let origin: Int
    /// Whole units indexed so far.
    public var units: Int { indexed - (open == nil ? 0 : 1) }
    /// Units indexed, the open one included.
    private var indexed = 0
    /// The unit after the whole ones, indexed as far as the stream went: its words' counts and
    /// where the stream ended.
    private var open: (counts: [String: Int32], end: Int)?
    /// Stream ranges holding re-read copies of earlier passages (skipped when indexing).
    public private(set) var copies: [Range<Int>] = []

    private struct Posting { var unit: Int32; var count: Int32 }
    private var postings: [String: [Posting]] = [:]
    private var lengths: [Int32] = []        // [unit] words counted
    private var totalWords = 0

    public init(unit: Int, origin: Int) {
        precondition(unit >= 1 && origin >= 0)
        self.unit = unit
        self.origin = origin
    }

    /// Stream range of unit k.
    public func range(ofUnit k: Int) -> Range<Int> { origin + k * unit ..< origin + (k + 1) * unit }

    /// Marks `range` of the stream as a re-read copy.
    public func noteCopy(_ range: Range<Int>) {
        guard !range.isEmpty else { return }
        copies.append(range)
    }

    /// Back to an earlier state (an exchange undone): the first `k` units indexed, the copies
    /// read before stream position n; `catchUp` indexes the stream again as it grows back.
    public func truncate(units k: Int, copiesBefore n: Int) {
        copies.removeAll { $0.upperBound > n }
        closeOpenUnit()
        guard k < units else { return }
        for (word, list) in postings {
            let kept = list.prefix { Int($0.unit) < k }
            postings[word] = kept.isEmpty ? nil : Array(kept)
        }
        lengths.removeSubrange(k...)
        totalWords = lengths.reduce(0) { $0 + Int($1) }
        indexed = k
    }

    /// Takes the open unit out of the index (its postings are the last of their lists).
    private func closeOpenUnit() {
        guard let (counts, _) = open else { return }
        for w in counts.keys {
            postings[w]!.removeLast()
            if postings[w]!.isEmpty { postings[w] = nil }
        }
        totalWords -= Int(lengths.removeLast())
        indexed -= 1
        open = nil
    }

    /// Where unit u ends in the stream (the open unit: where the stream ended).
    private func end(ofUnit u: Int) -> Int {
        if let open, u == indexed - 1 { return open.end }
        return range(ofUnit: u).upperBound
    }

    /// Whether a question may read unit u: it ends by `before` and is not wholly inside
    /// `excluding` (a conversation's earlier exchanges, hidden while a document question is
    /// answered). A unit only partly inside stays: the document's last unit runs on into the
    /// first question, and a fact in its last lines would be lost; `focus` reads only the
    /// part outside.
    private func usable(_ u: Int, before: Int, excluding: Range<Int>?) -> Bool {
        let start = range(ofUnit: u).lowerBound, end = end(ofUnit: u)
        guard let excluding else { return end <= before }
        return end <= before && !(excluding.lowerBound <= start && end <= excluding.upperBound)
    }

    /// Indexes every unit of `history` that lies wholly before stream position `end`, and
    /// what follows them up to `end` as the open unit.
    public func catchUp(history: [Int], end: Int, tokenizer: Tokenizer) {
        closeOpenUnit()
        let limit = min(end, history.count)
        while range(ofUnit: indexed).lowerBound < limit {
            let r = range(ofUnit: indexed).clamped(to: 0..<limit)
            var words: [String] = []
            if !copies.contains(where: { $0.overlaps(r) }) {
                words = Self.terms(of: tokenizer.decode(Array(history[r])))
            }
            var counts: [String: Int32] = [:]
            for w in words { counts[w, default: 0] += 1 }
            for (w, c) in counts { postings[w, default: []].append(Posting(unit: Int32(indexed), count: c)) }
            lengths.append(Int32(words.count))
            totalWords += words.count
            indexed += 1
            if r.upperBound < range(ofUnit: indexed - 1).upperBound { open = (counts, r.upperBound) }
        }
    }

    /// A unit's score against a question, and the share of the question's weight it matched.
    public struct Match: Equatable {
        public let unit: Int
        public let score: Double
        /// Matched words' weight over all question words that occur in the index: 1 when
        /// every such word is in the unit.
        public let coverage: Double
        public let words: [String]
    }

    /// The `limit` best units for `question` among those that end by stream position
    /// `before` and are not wholly inside `excluding`, best first (only units sharing a word
    /// with it).
    public func rank(_ question: String, limit: Int, before: Int = .max, excluding: Range<Int>? = nil) -> [Match] {
        guard indexed > 0 else { return [] }
        let n = Double(indexed), averageLength = max(1, Double(totalWords) / n)
        let k1 = 1.2, b = 0.75
        var score: [Int: Double] = [:], weight: [Int: Double] = [:], matched: [Int: [String]] = [:]
        var totalWeight = 0.0
        for (word, idf) in idf(of: question) {
            let list = postings[word]!
            totalWeight += idf
            for p in list where usable(Int(p.unit), before: before, excluding: excluding) {
                let u = Int(p.unit), tf = Double(p.count)
                let norm = tf * (k1 + 1) / (tf + k1 * (1 - b + b * Double(lengths[u]) / averageLength))
                score[u, default: 0] += idf * norm
                weight[u, default: 0] += idf
                matched[u, default: []].append(word)
            }
        }
        return score.map { Match(unit: $0.key, score: $0.value, coverage: weight[$0.key]! / totalWeight,
                                 words: matched[$0.key]!.sorted()) }
            .sorted { ($0.score, $1.unit) > ($1.score, $0.unit) }
            .prefix(limit).map { $0 }
    }

    /// Passages to read again for `question` among the units that end by `before` and are not
    /// wholly inside `excluding`: the best
    /// units (those scoring at least half the best one's score, with at least `minCoverage`
    /// of the question's weight), each with its neighbours on both sides (a fact may straddle
    /// a unit's edge, and the model reads a sentence better within its paragraph), merged
    /// where they touch, until `budget` tokens. Ordered as they are to be read: the best
    /// last, nearest the question.
    public func passages(for question: String, budget: Int, minCoverage: Double = 0, before: Int = .max,
                         excluding: Range<Int>? = nil) -> [Passage] {
        var selected = Set<Int>(), best: [Int: Match] = [:]
        let last = (0..<indexed).last { end(ofUnit: $0) <= before } ?? -1
        let ranked = rank(question, limit: 64, before: before, excluding: excluding)
        // Others only when about as relevant as the best: a unit that shares one common word
        // ("number", "open") is noise between the question and its passage.
        for m in ranked where m.coverage >= minCoverage && m.score >= 0.5 * ranked[0].score {
            var add = Set((max(0, m.unit - 1)...min(last, m.unit + 1)).filter { usable($0, before: before, excluding: excluding) })
                .subtracting(selected)
            if (selected.count + add.count) * unit > budget {
                // The best match alone, when even its neighbours do not fit.
                guard selected.isEmpty, unit <= budget else { continue }
                add = [m.unit]
            }
            selected.formUnion(add)
            best[m.unit] = m
        }
        // Maximal runs of selected units, each with the best match inside it.
        var runs: [Passage] = []
        for u in selected.sorted() {
            if let last = runs.last, last.units.upperBound + 1 == u {
                runs[runs.count - 1] = Passage(units: last.units.lowerBound...u, match: last.match)
            } else {
                runs.append(Passage(units: u...u, match: Match(unit: u, score: 0, coverage: 0, words: [])))
            }
            if let m = best[u], m.score > runs[runs.count - 1].match.score {
                runs[runs.count - 1] = Passage(units: runs[runs.count - 1].units, match: m)
            }
        }
        return runs.sorted { $0.match.score < $1.match.score }
    }

    /// The tokens of `passage` to read again: its units, widened by up to `slack` tokens on
    /// each side to the nearest sentence or line boundary, and never reaching `end`. A unit's
    /// edge falls anywhere, also inside a word: "The secret code word is PEL" ended a unit
    /// with "ICAN." in the next, and the model answered "PEL".
    public func tokens(of passage: Passage, history: [Int], end: Int, tokenizer: Tokenizer, slack: Int = 16) -> Range<Int> {
        var lo = range(ofUnit: passage.units.lowerBound).lowerBound, hi = range(ofUnit: passage.units.upperBound).upperBound
        func endsSentence(_ i: Int) -> Bool { Self.endsSentence(tokenizer.decode([history[i]])) }
        for i in stride(from: lo - 1, through: max(0, lo - slack), by: -1) where endsSentence(i) { lo = i + 1; break }
        let last = min(end, history.count) - 1
        if hi - 1 <= last, !endsSentence(hi - 1) {
            for i in hi..<min(last + 1, hi + slack) where endsSentence(i) { hi = i + 1; break }
        }
        return lo ..< min(hi, last + 1)
    }

    /// The part of `passage` to read when a question asks for one fact: the sentence sharing
    /// most of the question's word weight, searched over the passage and one unit on each
    /// side, with the sentences after it in its paragraph while the whole stays within
    /// `budget` tokens (the one sentence alone may be longer). Why so little: this model
    /// goes on from whatever it read last, and answers from any sentence near the question.
    /// With whole units before the question, "In which town did Captain Rookwood hide the
    /// copper chess set?" was answered with the paragraph after the fact ("The package and
    /// archive description can trace…"); with 32 tokens ending at the fact, "What name did
    /// Tobias give the hound?" with the quotation before it ("The name of the song is called
    /// 'Haddocks' Eyes'").
    ///
    /// Also returns the matching sentence's weight (the question's word weight it holds), by
    /// which passages are ordered: units score by all their words, so a unit where two common
    /// question words meet outranked the one sentence that named the question's subject.
    public func focus(_ passage: Passage, question: String, history: [Int], end: Int, tokenizer: Tokenizer,
                      budget: Int, excluding: Range<Int>? = nil) -> (range: Range<Int>, weight: Double) {
        let limit = min(end, history.count)
        var lo = range(ofUnit: max(0, passage.units.lowerBound - 1)).lowerBound
        var hi = min(limit, range(ofUnit: passage.units.upperBound + 1).upperBound)
        // Nothing of `excluding` is searched or read: it lies after the passage's start (its
        // last unit may run on into it) or before.
        if let excluding {
            if excluding.lowerBound >= range(ofUnit: passage.units.lowerBound).lowerBound {
                hi = min(hi, excluding.lowerBound)
            } else {
                lo = max(lo, excluding.upperBound)
            }
        }
        // Sentences: token runs ending at a token that holds . ! ? or a line break.
        var sentences: [Range<Int>] = [], breaks: [Bool] = [], start = lo
        for i in lo..<hi {
            let piece = tokenizer.decode([history[i]])
            if Self.endsSentence(piece) || i == hi - 1 {
                sentences.append(start ..< i + 1)
                breaks.append(piece.contains("\n"))
                start = i + 1
            }
        }
        let weights = idf(of: question)
        let scores = sentences.map { s in Set(Self.terms(of: tokenizer.decode(Array(history[s])))).reduce(0.0) { $0 + (weights[$1] ?? 0) } }
        guard let best = scores.indices.max(by: { scores[$0] < scores[$1] }), scores[best] > 0 else {
            return (tokens(of: passage, history: history, end: end, tokenizer: tokenizer).clamped(to: lo ..< max(lo, hi)), 0)
        }
        var next = best
        while !breaks[next], next + 1 < sentences.count, sentences[next + 1].upperBound - sentences[best].lowerBound <= budget,
              !tokenizer.decode([history[sentences[next + 1].lowerBound]]).contains("\n") {
            next += 1
        }
        return (sentences[best].lowerBound ..< sentences[next].upperBound, scores[best])
    }

    /// Whether a token's text ends a sentence or a line (where passages may start and end).
    private static func endsSentence(_ piece: String) -> Bool { piece.contains { ".!?\n".contains($0) } }

    /// Inverse document frequency of each of the question's words found in the index.
    private func idf(of question: String) -> [String: Double] {
        let n = Double(indexed)
        var out: [String: Double] = [:]
        for word in Set(Self.terms(of: question)) {
            guard let list = postings[word] else { continue }
            let df = Double(list.count)
            out[word] = log(1 + (n - df + 0.5) / (df + 0.5))
        }
        return out
    }

    /// A run of units to read again, with the match that chose it.
    public struct Passage: Equatable {
        public let units: ClosedRange<Int>
        public let match: Match
    }

    /// Forgets everything (a conversation reset).
    public func reset() {
        indexed = 0
        open = nil
        copies = []
        postings = [:]
        lengths = []
        totalWords = 0
    }

    /// The words of `text` that carry meaning: lower-cased runs of letters or digits, stop
    /// words dropped, plural and verb endings cut ("hid"/"hidden" stay apart; "doors" → "door").
    public static func terms(of text: String) -> [String] {
        var out: [String] = []
        var word = ""
        func flush() {
            defer { word = "" }
            guard !word.isEmpty, !stopWords.contains(word) else { return }
            out.append(stem(word))
        }
        for ch in text.lowercased() {
            if ch.isLetter || ch.isNumber { word.append(ch) } else if ch != "'" { flush() }
        }
        flush()
        return out
    }

    static func stem(_ w: String) -> String {
        guard w.count > 3, w.allSatisfy(\.isLetter) else { return w }
        if w.hasSuffix("ies"), w.count > 4 { return String(w.dropLast(3)) + "y" }          // cities → city
        if w.hasSuffix("ing"), w.count > 5 { return String(w.dropLast(3)) }                 // keeping → keep
        if w.hasSuffix("ed"), w.count > 5 { return String(w.dropLast(2)) }                  // called → call
        for end in ["sses", "shes", "ches", "xes", "zes"] where w.hasSuffix(end) { return String(w.dropLast(2)) }  // boxes → box
        if w.hasSuffix("s"), !w.hasSuffix("ss"), !w.hasSuffix("us") { return String(w.dropLast()) }              // lives → live
        return w
    }

    static let stopWords: Set<String> = [
        "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
        "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do",
        "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having",
        "he", "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "me",
        "more", "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our",
        "out", "over", "own", "s", "same", "she", "should", "so", "some", "such", "t", "than", "that", "the",
        "their", "them", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under",
        "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom",
        "why", "will", "with", "would", "you", "your", "yours",
    ]
}
