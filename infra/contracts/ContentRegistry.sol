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
    function updateManifest(bytes32 contentHash, string calldata manifestURI) external {
        Entry storage entry = entries[contentHash];
        require(entry.creator != address(0), "Not registered");
        require(entry.creator == msg.sender, "Only creator");
        entry.manifestURI = manifestURI;
        emit ManifestUpdated(contentHash, manifestURI, uint64(block.timestamp));
    }
}
