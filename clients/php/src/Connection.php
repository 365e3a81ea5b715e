<?php

declare(strict_types=1);

namespace Pushd;

/** One connection of an online uid. */
final class Connection
{
    public function __construct(
        public readonly int $id,
        public readonly string $peer,
        public readonly int $idleMs,
        public readonly int $connectedMs,
        /** In cluster mode, the node holding it. */
        public readonly ?string $node,
    ) {
    }
}
