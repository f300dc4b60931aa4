import Engine
import XCTest

final class RopeTableTests: XCTestCase {
    func testAnglesAreThetaTimesPosition() {
        let t = RopeTable(headDim: 64, positions: 100, base: 100_000)
        let theta5 = pow(100_000.0, -10.0 / 64)
        let values = t.rowValues(37)
        XCTAssertEqual(Double(values.cos[5]), cos(37 * theta5), accuracy: 1e-7)
        XCTAssertEqual(Double(values.sin[5]), sin(37 * theta5), accuracy: 1e-7)
        XCTAssertEqual(t.rowValues(0).cos, [Float](repeating: 1, count: 32))
    }
}

final class ZstdTests: XCTestCase {
    func testRoundTripAndCorruption() throws {
        let text = Array(String(repeating: "Scroll keeps sinks and a window. ", count: 500).utf8)
        let packed = try Zstd.compress(text)
        XCTAssertLessThan(packed.count, text.count / 20)
        XCTAssertEqual(try Zstd.decompress(packed, limit: 1 << 20), text)
        var bad = packed
        bad[bad.count / 2] ^= 0x55
        XCTAssertThrowsError(try Zstd.decompress(bad, limit: 1 << 20))
        XCTAssertThrowsError(try Zstd.decompress(Array(packed.prefix(packed.count - 3)), limit: 1 << 20))
        XCTAssertThrowsError(try Zstd.decompress(packed, limit: 100), "output limit")
    }
}
