import Foundation

/// Where finished memory blocks live: fixed-size blobs, one per (block, layer), in RAM up to
/// a byte budget and in an unlinked temporary file beyond it. A stream of a million tokens
/// holds ~13 GB of int8 keys and values for SmolLM2; the file keeps RSS bounded while the
/// page cache still serves recently read blocks at memory speed.
final class BlockStore {
    let blobBytes: Int
    let layerCount: Int
    let ramBudget: Int
    private var ram: [UnsafeMutableRawPointer] = []   // block·layerCount + layer, while within budget
    private var fileDescriptor: Int32 = -1
    private(set) var fileBlobs = 0
    /// Set once when a write to the file failed (full disk): later blocks are dropped, and
    /// the caller says so once.
    private(set) var failure: String?
    private let directory: String

    init(blobBytes: Int, layerCount: Int, ramBudget: Int, directory: String = NSTemporaryDirectory()) {
        self.blobBytes = blobBytes
        self.layerCount = layerCount
        self.ramBudget = ramBudget
        self.directory = directory
    }

    deinit {
        ram.forEach { $0.deallocate() }
        if fileDescriptor >= 0 { close(fileDescriptor) }
    }

    var ramBytes: Int { ram.count * blobBytes }
    var fileBytes: Int { fileBlobs * blobBytes }
    /// Blobs held in RAM: blocks below ramBlocks·layerCount blobs are in RAM, the rest in the file.
    private var ramBlobLimit: Int { max(0, ramBudget / blobBytes) / layerCount * layerCount }

    /// Stores blob number `index` (= block · layerCount + layer; blobs arrive in any layer
    /// order but each block's blobs after the previous block's in the same layer).
    func write(_ index: Int, from bytes: UnsafeRawPointer) {
        if index < ramBlobLimit {
            while ram.count <= index { ram.append(.allocate(byteCount: blobBytes, alignment: 64)) }
            ram[index].copyMemory(from: bytes, byteCount: blobBytes)
            return
        }
        guard failure == nil, openFile() else { return }
        do {
            try FileIO.writeAll(fileDescriptor, UnsafeRawBufferPointer(start: bytes, count: blobBytes), at: (index - ramBlobLimit) * blobBytes)
        } catch {
            failure = "memory file \(error)"
            return
        }
        fileBlobs = max(fileBlobs, index - ramBlobLimit + 1)
    }

    /// Creates the file now rather than when the RAM budget fills, so that a missing or
    /// read-only temporary folder is said before a long document is read, not after.
    @discardableResult
    func openFile() -> Bool {
        if fileDescriptor >= 0 { return true }
        guard failure == nil else { return false }
        let path = (directory as NSString).appendingPathComponent("scroll-memory-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        fileDescriptor = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fileDescriptor >= 0 else { failure = "cannot create \(path): \(String(cString: strerror(errno)))"; return false }
        unlink(path)   // the file goes away with the process, however it ends
        return true
    }

    /// Blob `index`, either in place (RAM) or read into `buffer`; nil if it was never stored.
    func read(_ index: Int, into buffer: UnsafeMutableRawPointer) -> UnsafeRawPointer? {
        if index < ramBlobLimit { return index < ram.count ? UnsafeRawPointer(ram[index]) : nil }
        guard fileDescriptor >= 0, index - ramBlobLimit < fileBlobs else { return nil }
        let buffer = UnsafeMutableRawBufferPointer(start: buffer, count: blobBytes)
        guard (try? FileIO.readFully(fileDescriptor, into: buffer, at: (index - ramBlobLimit) * blobBytes)) == true else { return nil }
        return UnsafeRawPointer(buffer.baseAddress!)
    }

    /// Keeps the first `count` blobs (a rewind to fewer blocks): later ones are freed, and
    /// the file is cut back to what it still holds.
    func truncate(to count: Int) {
        while ram.count > min(count, ramBlobLimit) { ram.removeLast().deallocate() }
        let inFile = max(0, count - ramBlobLimit)
        if fileBlobs > inFile {
            fileBlobs = inFile
            if fileDescriptor >= 0 { ftruncate(fileDescriptor, off_t(inFile * blobBytes)) }
        }
    }

    func reset() {
        ram.forEach { $0.deallocate() }
        ram = []
        if fileDescriptor >= 0 { ftruncate(fileDescriptor, 0) }
        fileBlobs = 0
        failure = nil
    }
}
