import Engine
import XCTest

/// The passkey prompt (Evaluation/Passkey.swift): its length and where the needle sits.
final class PasskeyTests: XCTestCase {
    func testPromptLengthAndDepth() {
        let tokenizer = TestSupport.shared.tokenizer
        for tokens in [300, 2000] {
            for depth in [0.0, 0.5, 1.0] {
                let ids = Passkey.prompt(tokens: tokens, depth: depth, key: 4242, tokenizer: tokenizer)
                XCTAssertLessThanOrEqual(ids.count, tokens)
                XCTAssertGreaterThan(ids.count, tokens - 30, "filler fills the prompt")
                let text = tokenizer.decode(ids)
                XCTAssertTrue(text.hasPrefix(Passkey.intro))
                XCTAssertTrue(text.hasSuffix(Passkey.question))
                // Depth is measured across the filler: from the intro's end to the question.
                let needle = Passkey.needle(4242)
                let at = text.distance(from: text.startIndex, to: text.range(of: needle)!.lowerBound)
                let span = text.count - Passkey.intro.count - Passkey.question.count - needle.count
                let relative = Double(at - Passkey.intro.count) / Double(span)
                XCTAssertEqual(relative, depth, accuracy: 0.1, "\(tokens) tokens, depth \(depth)")
            }
        }
    }

    func testFirstInteger() {
        XCTAssertEqual(Passkey.firstInteger(in: " 18762. The pass key is"), 18762)
        XCTAssertEqual(Passkey.firstInteger(in: "it is 7"), 7)
        XCTAssertNil(Passkey.firstInteger(in: " unknown."))
    }
}
