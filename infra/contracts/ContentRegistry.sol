// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title ContentRegistry (first storage layout)
/// @notice Anchors the SHA-256 of a piece of content to its creator and to the URI of a signed
///         manifest. The public getter `entries(bytes32)` returns
///         (address creator, bytes32 contentHash, string manifestURI, uint64 timestamp).
contract ContentRegistry {
    struct Entry {
        address creator;
        bytes32 contentHash;
        string manifestURI;
        uint64 timestamp;
    }

    mapping(bytes32 => Entry) public entries;

    event ContentRegistered(
        bytes32 indexed contentHash,
        address indexed creator,
        string manifestURI,
        uint64 timestamp
    );

    event ManifestUpdated(bytes32 indexed contentHash, string manifestURI, uint64 timestamp);

    event EntryRevoked(bytes32 indexed contentHash, uint64 timestamp);

    modifier onlyCreator(bytes32 contentHash) {
        address creator = entries[contentHash].creator;
        require(creator != address(0), "Not registered");
        require(creator == msg.sender, "Only creator");
        _;
    }

    /// @notice Registers `contentHash` for the sender. A hash can be registered only once.
    function register(bytes32 contentHash, string calldata manifestURI) external {
        require(entries[contentHash].creator == address(0), "Already registered");
        uint64 timestamp = uint64(block.timestamp);
        entries[contentHash] = Entry({
            creator: msg.sender,
            contentHash: contentHash,
            manifestURI: manifestURI,
            timestamp: timestamp
        });
        emit ContentRegistered(contentHash, msg.sender, manifestURI, timestamp);
    }

    /// @notice Points an existing registration at a new manifest. Only its creator may do so.
    function updateManifest(bytes32 contentHash, string calldata manifestURI) external onlyCreator(contentHash) {
        entries[contentHash].manifestURI = manifestURI;
        emit ManifestUpdated(contentHash, manifestURI, uint64(block.timestamp));
    }

    /// @notice Withdraws a registration: the entry keeps its creator and timestamp, its manifest
    ///         URI becomes empty. Only its creator may do so.
    function revoke(bytes32 contentHash) external onlyCreator(contentHash) {
        entries[contentHash].manifestURI = "";
        emit EntryRevoked(contentHash, uint64(block.timestamp));
    }
}
