<?php

declare(strict_types=1);

namespace Pushd;

/** A push to a group: connections that took it, members whose mailbox kept it, members. */
final class GroupSent
{
    public function __construct(
        public readonly int $delivered,
        public readonly int $queued,
        public readonly int $members,
    ) {
    }

    public function accepted(): bool
    {
        return $this->delivered > 0 || $this->queued > 0;
    }
}
