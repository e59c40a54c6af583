// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title ContentRegistryCompact (gas-optimised storage layout)
/// @notice Same external interface as ContentRegistry, but the entry does not repeat the hash
///         (it is the mapping key) and packs the creator and the timestamp into one storage slot.
///         The public getter `entries(bytes32)` returns
///         (address creator, uint64 timestamp, string manifestURI).
contract ContentRegistryCompact {
    struct Entry {
        address creator;
        uint64 timestamp;
        string manifestURI;
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

    error AlreadyRegistered(bytes32 contentHash);
    error NotRegistered(bytes32 contentHash);
    error OnlyCreator(bytes32 contentHash, address creator);

    /// @notice Registers `contentHash` for the sender. A hash can be registered only once.
    function register(bytes32 contentHash, string calldata manifestURI) external {
        Entry storage entry = entries[contentHash];
        if (entry.creator != address(0)) revert AlreadyRegistered(contentHash);
        uint64 timestamp = uint64(block.timestamp);
        entry.creator = msg.sender;
        entry.timestamp = timestamp;
        entry.manifestURI = manifestURI;
        emit ContentRegistered(contentHash, msg.sender, manifestURI, timestamp);
    }

    /// @notice Points an existing registration at a new manifest. Only its creator may do so.
    function updateManifest(bytes32 contentHash, string calldata manifestURI) external {
        _entryOfCreator(contentHash).manifestURI = manifestURI;
        emit ManifestUpdated(contentHash, manifestURI, uint64(block.timestamp));
    }

    /// @notice Withdraws a registration: the entry keeps its creator and timestamp, its manifest
    ///         URI becomes empty. Only its creator may do so.
    function revoke(bytes32 contentHash) external {
        _entryOfCreator(contentHash).manifestURI = "";
        emit EntryRevoked(contentHash, uint64(block.timestamp));
    }

    /// @dev The registered entry of `contentHash`, if the sender created it; reverts otherwise.
    function _entryOfCreator(bytes32 contentHash) private view returns (Entry storage entry) {
        entry = entries[contentHash];
        address creator = entry.creator;
        if (creator == address(0)) revert NotRegistered(contentHash);
        if (creator != msg.sender) revert OnlyCreator(contentHash, creator);
    }
}
