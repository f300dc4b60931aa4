import Engine
import Foundation
import XCTest

/// The question-time word index over evicted text (PassageIndex): its incremental BM25 equals
/// a brute-force scorer, it finds a fact in real prose, skips re-read copies, and picks
/// passages within its budget.
final class PassageIndexTests: XCTestCase {
    /// Real prose every Debian system has (the GPL), as the tokenizer cuts it.
    private func prose() throws -> (text: String, ids: [Int]) {
        let path = "/usr/share/common-licenses/GPL-3"
        guard let data = FileManager.default.contents(atPath: path) else { throw XCTSkip("\(path) is missing") }
        let text = String(decoding: data, as: UTF8.self)
        return (text, TestSupport.shared.tokenizer.encode(text))
    }

    /// BM25 written out for one question over every unit's decoded words (k1 1.2, b 0.75).
    private func bruteForce(_ question: String, units: [[String]]) -> [Int: Double] {
        let n = Double(units.count)
        let average = Double(units.map(\.count).reduce(0, +)) / n
        var scores: [Int: Double] = [:]
        for word in Set(PassageIndex.terms(of: question)) {
            let df = Double(units.filter { $0.contains(word) }.count)
            guard df > 0 else { continue }
            let idf = log(1 + (n - df + 0.5) / (df + 0.5))
            for (u, words) in units.enumerated() {
                let tf = Double(words.filter { $0 == word }.count)
                guard tf > 0 else { continue }
                let lengthNorm: Double = 0.25 + 0.75 * Double(words.count) / average
                let saturated: Double = tf * 2.2 / (tf + 1.2 * lengthNorm)
                scores[u, default: 0] += idf * saturated
            }
        }
        return scores
    }

    func testRankingEqualsBruteForce() throws {
        let (_, ids) = try prose()
        let tokenizer = TestSupport.shared.tokenizer
        let index = PassageIndex(unit: 64, origin: 4)
        // Indexed in three steps, as a stream grows: the same as all at once.
        for end in [1000, 2500, ids.count] { index.catchUp(history: ids, end: end, tokenizer: tokenizer) }
        XCTAssertEqual(index.units, (ids.count - 4) / 64)
        // The whole units, and the tokens after them as the open unit.
        let tail = index.range(ofUnit: index.units).clamped(to: 0..<ids.count)
        XCTAssertFalse(tail.isEmpty, "the text ends inside a unit")
        let units = (0..<index.units).map { PassageIndex.terms(of: tokenizer.decode(Array(ids[index.range(ofUnit: $0)]))) }
            + [PassageIndex.terms(of: tokenizer.decode(Array(ids[tail])))]
        for question in ["What does the license say about patents?", "Who is a covered work's licensee?",
                         "installation information for a user product", "no words of the text: zebra quasar"] {
            let expected = bruteForce(question, units: units)
            let ranked = index.rank(question, limit: .max)
            XCTAssertEqual(ranked.count, expected.count, question)
            for m in ranked { XCTAssertEqual(m.score, expected[m.unit]!, accuracy: 1e-9, question) }
            XCTAssertEqual(ranked.map(\.score), ranked.map(\.score).sorted(by: >), question)
        }
    }

    func testFindsAFactInProseAndSkipsCopies() throws {
        let (text, _) = try prose()
        let tokenizer = TestSupport.shared.tokenizer
        let cut = text.index(text.startIndex, offsetBy: text.count / 2)
        let paragraph = text[cut...].range(of: "\n\n")!.upperBound
        let fact = "The secret code of the amber gate is 58213.\n\n"
        let ids = tokenizer.encode(String(text[..<paragraph]) + fact + String(text[paragraph...]))
        let factAt = tokenizer.encode(String(text[..<paragraph])).count + 5
        let index = PassageIndex(unit: 64, origin: 4)
        index.catchUp(history: ids, end: ids.count, tokenizer: tokenizer)
        let factUnit = (factAt - 4) / 64
        for question in ["What is the secret code of the amber gate?", "Which number opens the amber gate?"] {
            XCTAssertEqual(index.rank(question, limit: 1).first?.unit, factUnit, question)
        }
        // The passages: the fact's unit with its neighbours, best last, within the budget.
        let passages = index.passages(for: "Which number opens the amber gate?", budget: 512)
        XCTAssertEqual(passages.last?.units, factUnit - 1...factUnit + 1)
        XCTAssertLessThanOrEqual(passages.reduce(0) { $0 + $1.units.count } * 64, 512)
        XCTAssertTrue(index.passages(for: "Which number opens the amber gate?", budget: 100).last!.units == factUnit...factUnit)
        // A copy of the fact's passage read again later in the stream is not indexed.
        let copy = Array(ids[index.range(ofUnit: factUnit - 1).lowerBound ..< index.range(ofUnit: factUnit + 1).upperBound])
        let copyStart = index.range(ofUnit: index.units).lowerBound
        let grown = Array(ids[..<copyStart]) + copy + Array(ids[..<(copyStart)]).suffix(64 * 4)
        index.noteCopy(copyStart ..< copyStart + copy.count)
        index.catchUp(history: grown, end: grown.count, tokenizer: tokenizer)
        let hits = index.rank("What is the secret code of the amber gate?", limit: .max).filter { $0.coverage > 0.99 }
        XCTAssertEqual(hits.map(\.unit), [factUnit])
        // Chat turns ask for most of the question's weight: a question naming nothing of it reads nothing.
        XCTAssertTrue(index.passages(for: "What is your favourite zebra?", budget: 256, minCoverage: 0.5).isEmpty)
    }

    /// A passage about one fact is cut to the fact's sentence, with the rest of its
    /// paragraph within the budget, also when the fact sits at a unit's edge.
    /// A fact in the last lines, after the last whole unit, is found and read again; once the
    /// stream goes on, its unit is indexed whole, once.
    func testFindsAFactInTheLastLines() throws {
        let (text, _) = try prose()
        let tokenizer = TestSupport.shared.tokenizer
        let fact = "The secret code of the amber gate is 58213."
        // Text up to a unit's edge (give or take a token or two), then the fact.
        var head = String(text.prefix(6000)) + "\n\n"
        while (tokenizer.encode(head).count - 4) % 64 > 2 { head += "ok " }
        let ids = tokenizer.encode(head + fact)
        let index = PassageIndex(unit: 64, origin: 4)
        index.catchUp(history: ids, end: ids.count, tokenizer: tokenizer)
        let question = "What is the secret code of the amber gate?"
        XCTAssertEqual(index.rank(question, limit: 1).first?.unit, index.units, "the open unit")
        let passage = try XCTUnwrap(index.passages(for: question, budget: 512, before: ids.count).last)
        let focus = index.focus(passage, question: question, history: ids, end: ids.count, tokenizer: tokenizer, budget: 32)
        XCTAssertTrue(tokenizer.decode(Array(ids[focus.range])).contains("58213"))
        let more = ids + tokenizer.encode(" The gate stood in the north wall of the garden, behind the yew hedge and the old well.")
        index.catchUp(history: more, end: more.count, tokenizer: tokenizer)
        XCTAssertEqual(index.rank(question, limit: 8).filter { $0.words.contains("amber") }.count, 1)
    }

    /// A conversation's earlier exchanges, hidden while a later document question is read and
    /// answered, are not read again either: no unit wholly inside them is ranked or taken as a
    /// neighbour, and `focus` reads nothing of them (a later question about the orange locker
    /// was answered with the violet locker's code, asked before). The document's last unit,
    /// which runs on into them, still gives its fact.
    func testExcludedRangeIsNeverRead() throws {
        let (text, _) = try prose()
        let tokenizer = TestSupport.shared.tokenizer
        let fact = "The secret code of the amber gate is 58213."
        let document = tokenizer.encode(String(text.prefix(12000)) + "\n\n" + fact)
        let exchange = tokenizer.encode(String(repeating: " What is the secret code of the amber gate? The amber gate's secret code is 99999.", count: 4))
        let ids = document + exchange + tokenizer.encode(String(text.prefix(400)))
        let earlier = document.count ..< document.count + exchange.count
        let index = PassageIndex(unit: 64, origin: 4)
        index.catchUp(history: ids, end: ids.count, tokenizer: tokenizer)
        let question = "What is the secret code of the amber gate?"
        func inside(_ u: Int) -> Bool { earlier.lowerBound <= index.range(ofUnit: u).lowerBound && index.range(ofUnit: u).upperBound <= earlier.upperBound }
        XCTAssertTrue(inside(index.rank(question, limit: 1)[0].unit), "seen, the exchange ranks first")
        XCTAssertFalse(index.rank(question, limit: 64, excluding: earlier).contains { inside($0.unit) })
        let passages = index.passages(for: question, budget: 512, excluding: earlier)
        XCTAssertFalse(passages.contains { $0.units.contains(where: inside) })
        let passage = try XCTUnwrap(passages.last)
        let focused = index.focus(passage, question: question, history: ids, end: ids.count, tokenizer: tokenizer, budget: 128,
                                  excluding: earlier)
        XCTAssertEqual(tokenizer.decode(Array(ids[focused.range])).trimmingCharacters(in: .whitespacesAndNewlines), fact)
        let seen = index.focus(passage, question: question, history: ids, end: ids.count, tokenizer: tokenizer, budget: 128)
        XCTAssertTrue(seen.range.overlaps(earlier), "seen, the fact's paragraph runs on into the exchange")
    }

    func testFocusIsTheFactsSentenceAndItsParagraph() throws {
        let (text, _) = try prose()
        let tokenizer = TestSupport.shared.tokenizer
        let fact = "The lighthouse on Gull Island is kept by a woman named Saskia Halloran."
        let both = tokenizer.encode(fact + " She came in 1962.").count
        for fraction in [0.3, 0.5, 0.7] {
            let cut = text.index(text.startIndex, offsetBy: Int(Double(text.count) * fraction))
            let paragraph = text[cut...].range(of: "\n\n")!.upperBound
            let ids = tokenizer.encode(String(text[..<paragraph]) + fact + " She came in 1962.\n\n" + String(text[paragraph...]))
            let index = PassageIndex(unit: 64, origin: 4)
            index.catchUp(history: ids, end: ids.count, tokenizer: tokenizer)
            let question = "Who keeps the lighthouse on Gull Island?"
            let passage = try XCTUnwrap(index.passages(for: question, budget: 512).last)
            for budget in [4, 16, both + 1, 128] {
                let r = index.focus(passage, question: question, history: ids, end: ids.count, tokenizer: tokenizer, budget: budget).range
                let read = tokenizer.decode(Array(ids[r])).trimmingCharacters(in: .whitespacesAndNewlines)
                // The fact's sentence alone, longer than a small budget; the next sentence of its paragraph when it fits.
                XCTAssertEqual(read, budget <= both ? fact : fact + " She came in 1962.", "\(fraction) \(budget)")
            }
        }
    }

    func testTermsAndStems() {
        XCTAssertEqual(PassageIndex.terms(of: "The Doors of the 3 cities, 48213 keys!"), ["door", "3", "city", "48213", "key"])
        XCTAssertEqual(PassageIndex.terms(of: "It's hidden; kept, keeping"), ["hidden", "kept", "keep"])
        // A question's "live" finds a text's "lives" (a chat asking where someone lives missed it).
        XCTAssertEqual(PassageIndex.terms(of: "She lives with boxes of glass, and a virus"), ["live", "box", "glass", "virus"])
    }
}
