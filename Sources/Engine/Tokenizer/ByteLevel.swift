/// GPT-2's reversible byte ↔ unicode mapping (openai/gpt-2 encoder.py, bytes_to_unicode):
/// printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100 onwards, so every
/// byte string becomes a string of visible characters that BPE vocabularies can hold.
enum ByteLevel {
    /// byte → its unicode scalar
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7e).contains(b) || (0xa1...0xac).contains(b) || (0xae...0xff).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// unicode scalar value → byte, for decoding
    static let scalarToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s.value] = UInt8(b) }
        return map
    }()

    /// The bytes a vocabulary entry stands for, or nil if it holds a character outside the
    /// mapping (a special token such as `<|im_start|>` is plain ASCII and maps fine).
    static func bytes(ofToken token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.unicodeScalars.count)
        for s in token.unicodeScalars {
            guard let b = scalarToByte[s.value] else { return nil }
            out.append(b)
        }
        return out
    }
}
