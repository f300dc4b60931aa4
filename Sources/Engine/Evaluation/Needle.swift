import Foundation

/// A made-up fact hidden in natural text, and a question about it (`scroll needle`).
///
/// The passkey's filler is one sentence repeated, so its needle is the only sentence that
/// differs and any ranking finds it; in real text every passage differs. These facts come
/// in several kinds (codes, names, places, years, lengths, pets), their values drawn at
/// random so that the model cannot know them, and each kind is asked two ways: with the
/// fact's own words, and paraphrased (only the fact's subject is named as in the text).
public struct NeedleFact: Codable, Equatable {
    public let kind: String
    /// What the fact is about ("the lighthouse on Gull Island"): one document never holds
    /// two facts about one subject, which would contradict each other.
    public let subject: String
    public let statement: String
    public let question: String
    public let paraphrased: Bool
    /// Right when the reply contains it (case-insensitive).
    public let answer: String

    public func isAnswered(by reply: String) -> Bool {
        reply.range(of: answer, options: [.caseInsensitive, .diacriticInsensitive]) != nil
    }
}

public enum Needle {
    static let colours = ["blue", "green", "crimson", "yellow", "violet", "silver", "orange", "grey", "scarlet", "amber"]
    static let objects = ["door", "gate", "chest", "cabinet", "vault", "locker", "trunk", "box"]
    static let firstNames = ["Elena", "Tobias", "Mirela", "Anselm", "Ingrid", "Casimir", "Odette", "Rufus", "Saskia",
                             "Bartholomew", "Yvonne", "Leopold", "Henrietta", "Ignatius", "Petra", "Florian"]
    static let surnames = ["Voss", "Halloran", "Kestrel", "Ambrose", "Quill", "Thornbury", "Marchetti", "Oyelaran",
                           "Brackwell", "Lindqvist", "Pemberton", "Castellane", "Vantongeren", "Rookwood", "Szabo"]
    static let islands = ["Marrow", "Gull", "Heron", "Skerry", "Brindle", "Cormorant", "Foxglove", "Tansy"]
    static let towns = ["Tarragona", "Ballymena", "Kirkwall", "Trondheim", "Ljubljana", "Valparaiso", "Dubrovnik",
                        "Tromso", "Saltaire", "Whitby", "Ravenna", "Lismore", "Arequipa", "Quimper"]
    static let things = ["compass", "pocket watch", "telescope", "music box", "chess set", "lantern", "sextant"]
    static let metals = ["silver", "brass", "copper", "golden", "iron", "pewter"]
    static let festivals = ["Orchard", "Lantern", "Harvest", "Kite", "Cheese", "Heather", "Salmon", "Violin"]
    static let events = ["Festival", "Fair", "Regatta", "Parade", "Tournament"]
    static let rivers = ["Alder", "Wendle", "Ouse", "Tamsin", "Corran", "Lusk", "Brede", "Medlock"]
    static let animals = ["parrot", "tortoise", "ferret", "goat", "donkey", "cat", "hound"]
    static let petNames = ["Biscuit", "Marmalade", "Pickwick", "Cobweb", "Juniper", "Tallulah", "Figaro", "Nutmeg",
                           "Bramble", "Mustard"]

    /// A fact of a random kind and values; `paraphrased` picks the question's wording.
    public static func fact(_ rng: inout RandomGenerator, paraphrased: Bool) -> NeedleFact {
        func pick<T>(_ list: [T]) -> T { list[Int(rng.next() % UInt64(list.count))] }
        func number(_ lo: Int, _ hi: Int) -> Int { lo + Int(rng.next() % UInt64(hi - lo + 1)) }
        switch rng.next() % 6 {
        case 0:
            let colour = pick(colours), object = pick(objects), code = String(number(10_000, 99_999))
            return NeedleFact(kind: "code", subject: "the \(colour) \(object)", statement: "The secret code of the \(colour) \(object) is \(code).",
                              question: paraphrased ? "Which number opens the \(colour) \(object)?"
                                                    : "What is the secret code of the \(colour) \(object)?",
                              paraphrased: paraphrased, answer: code)
        case 1:
            let island = pick(islands), first = pick(firstNames), last = pick(surnames)
            return NeedleFact(kind: "name", subject: "the lighthouse on \(island) Island", statement: "The lighthouse on \(island) Island is kept by a woman named \(first) \(last).",
                              question: paraphrased ? "Who looks after the lighthouse of \(island) Island?"
                                                    : "What is the name of the woman who keeps the lighthouse on \(island) Island?",
                              paraphrased: paraphrased, answer: last)
        case 2:
            let title = pick(["Professor", "Captain", "Doctor", "Colonel"]), last = pick(surnames)
            let thing = "\(pick(metals)) \(pick(things))", town = pick(towns)
            return NeedleFact(kind: "place", subject: "\(title) \(last)", statement: "\(title) \(last) hid the \(thing) in the town of \(town).",
                              question: paraphrased ? "Where is the \(thing) of \(title) \(last) hidden?"
                                                    : "In which town did \(title) \(last) hide the \(thing)?",
                              paraphrased: paraphrased, answer: town)
        case 3:
            let name = "\(pick(festivals)) \(pick(events))", year = String(number(1701, 1989))
            return NeedleFact(kind: "year", subject: "the \(name)", statement: "The \(name) of \(pick(towns)) was first held in the year \(year).",
                              question: paraphrased ? "Since when has the \(name) taken place?"
                                                    : "In which year was the \(name) first held?",
                              paraphrased: paraphrased, answer: year)
        case 4:
            let river = pick(rivers), length = String(number(120, 980))
            return NeedleFact(kind: "length", subject: "the river \(river)", statement: "The old stone bridge over the river \(river) is \(length) metres long.",
                              question: paraphrased ? "How far does the bridge over the river \(river) span?"
                                                    : "How long is the old stone bridge over the river \(river)?",
                              paraphrased: paraphrased, answer: length)
        default:
            let first = pick(firstNames), animal = pick(animals), pet = pick(petNames)
            return NeedleFact(kind: "pet", subject: "\(first)'s \(animal)", statement: "\(first) \(pick(surnames)) has a \(animal) called \(pet).",
                              question: paraphrased ? "What name did \(first) give the \(animal)?"
                                                    : "What is the name of the \(animal) that \(first) has?",
                              paraphrased: paraphrased, answer: pet)
        }
    }

    /// About `tokens` tokens of `text` from a random paragraph on, with `statement` put in
    /// as a paragraph of its own at `depth` (0: the start, 1: the end), between paragraphs.
    /// Returns the haystack and where the fact starts in it (characters).
    public static func haystack(from text: String, tokens: Int, depth: Double, statement: String,
                                tokenizer: Tokenizer, rng: inout RandomGenerator) -> (text: String, factOffset: Int) {
        let paragraphs = text.components(separatedBy: "\n\n").filter { !$0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }
        guard !paragraphs.isEmpty else { return (statement, 0) }
        // Paragraphs from a random one on while they fit (counted one by one: the joins
        // add a token or so each, which the margin below leaves room for).
        let budget = tokens - tokenizer.encode(statement).count - 8
        var index = Int(rng.next() % UInt64(paragraphs.count))
        var taken: [String] = [], used = 0
        while taken.count < paragraphs.count {
            let cost = tokenizer.encode(paragraphs[index]).count + 1
            if used + cost > budget && !taken.isEmpty { break }
            taken.append(paragraphs[index])
            used += cost
            index = (index + 1) % paragraphs.count
        }
        let at = Int((min(1, max(0, depth)) * Double(taken.count)).rounded())
        let before = taken[..<at].joined(separator: "\n\n")
        let after = taken[at...].joined(separator: "\n\n")
        let prefix = before.isEmpty ? "" : before + "\n\n"
        let hay = prefix + statement + (after.isEmpty ? "" : "\n\n" + after)
        return (hay, prefix.count)
    }
}
