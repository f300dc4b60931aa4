import Glibc

/// Tokens a vocabulary marks user-defined (ggml token type 4: Gemma's "\n", runs of spaces,
/// tabs and newlines, HTML tags) are cut out of plain text before the vocabulary's own
/// algorithm runs, as llama.cpp's tokenizer_st_partition does also with special-token
/// parsing off (Hugging Face `tokenizers` treats added tokens the same way): longest token
/// first over the whole text, each occurrence left to right, then the next shorter one in
/// what is left. Control tokens are not cut out: typed, they stay text.
struct UserDefinedTokens {
    /// (UTF-8 text, id), longest first.
    private let tokens: [(text: [UInt8], id: Int)]

    init(tokens all: [String], types: [Int]) {
        tokens = zip(all, types).enumerated()
            .filter { $0.element.1 == Tokenizer.userDefinedType && !$0.element.0.isEmpty }
            .map { (Array($0.element.0.utf8), $0.offset) }
            .sorted { $0.text.count != $1.text.count ? $0.text.count > $1.text.count : $0.id < $1.id }
    }

    var isEmpty: Bool { tokens.isEmpty }

    enum Fragment: Equatable {
        case text(Range<Int>)   // a byte range of the input
        case token(Int)
    }

    /// The text as fragments in order: plain text between the user-defined tokens it holds.
    func split(_ utf8: [UInt8]) -> [Fragment] {
        var fragments: [Fragment] = utf8.isEmpty ? [] : [.text(0 ..< utf8.count)]
        guard !tokens.isEmpty else { return fragments }
        utf8.withUnsafeBufferPointer { base in
            for token in tokens {
                var out: [Fragment] = []
                out.reserveCapacity(fragments.count)
                token.text.withUnsafeBufferPointer { needle in
                    for fragment in fragments {
                        guard case .text(var rest) = fragment else { out.append(fragment); continue }
                        while let at = Self.find(needle, in: base, rest) {
                            if at > rest.lowerBound { out.append(.text(rest.lowerBound ..< at)) }
                            out.append(.token(token.id))
                            rest = at + needle.count ..< rest.upperBound
                        }
                        if !rest.isEmpty { out.append(.text(rest)) }
                    }
                }
                fragments = out
            }
        }
        return fragments
    }

    /// Where `needle` first occurs in `haystack[range]` (memchr for its first byte, then memcmp).
    private static func find(_ needle: UnsafeBufferPointer<UInt8>, in haystack: UnsafeBufferPointer<UInt8>,
                             _ range: Range<Int>) -> Int? {
        let base = haystack.baseAddress!, n = needle.count
        var from = range.lowerBound
        while range.upperBound - from >= n {
            guard let hit = memchr(base + from, Int32(needle[0]), range.upperBound - from - n + 1) else { return nil }
            let at = UnsafePointer(hit.assumingMemoryBound(to: UInt8.self)) - base
            if memcmp(base + at, needle.baseAddress!, n) == 0 { return at }
            from = at + 1
        }
        return nil
    }
}
