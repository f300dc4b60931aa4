import Foundation

/// The passkey-retrieval prompt (Landmark Attention, Mohtashami & Jaggi 2023; the YaRN
/// paper's protocol): a number hidden at a chosen depth in repeated filler, then asked for.
/// Lines are joined with "\n"; the answer is right when the first integer generated after
/// "The pass key is" equals the key.
public enum Passkey {
    public static let intro = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there."
    public static let filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
    public static let question = "What is the pass key? The pass key is"

    public static func needle(_ key: Int) -> String { "The pass key is \(key). Remember it. \(key) is the pass key." }

    /// The prompt of about `tokens` tokens (never more) with the needle at `depth`: 0 right
    /// after the intro, 1 right before the question; it starts with the model's BOS where the
    /// model adds one (Gemma: without it, its answers fell apart).
    public static func prompt(tokens: Int, depth: Double, key: Int, tokenizer: Tokenizer) -> [Int] {
        let bos = tokenizer.leadingBOS
        let perFiller = tokenizer.encode(" " + filler).count
        let fixed = bos.count + tokenizer.encode([intro, filler, needle(key), filler, question].joined(separator: "\n")).count - 2 * perFiller
        let total = max(0, (tokens - fixed) / perFiller)
        let before = Int((min(1, max(0, depth)) * Double(total)).rounded())
        func fillers(_ n: Int) -> [String] { n > 0 ? [Array(repeating: filler, count: n).joined(separator: " ")] : [] }
        var ids = bos + tokenizer.encode(([intro] + fillers(before) + [needle(key)] + fillers(total - before) + [question]).joined(separator: "\n"))
        // Token merges across the joins can make the estimate a token or two long.
        var after = total - before
        while ids.count > tokens, after > 0 {
            after -= 1
            ids = bos + tokenizer.encode(([intro] + fillers(before) + [needle(key)] + fillers(after) + [question]).joined(separator: "\n"))
        }
        return ids
    }

    /// The first run of ASCII digits in `text`, as a number.
    public static func firstInteger(in text: String) -> Int? {
        guard let start = text.firstIndex(where: { $0.isASCII && $0.isNumber }) else { return nil }
        let digits = text[start...].prefix { $0.isASCII && $0.isNumber }.prefix(18)
        return Int(digits)
    }
}
