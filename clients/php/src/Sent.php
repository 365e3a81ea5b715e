<?php

declare(strict_types=1);

namespace Pushd;

/** A push to one uid: connections that took it, and whether its mailbox kept it instead. */
final class Sent
{
    public function __construct(public readonly int $delivered, public readonly bool $queued)
    {
    }

    public function accepted(): bool
    {
        return $this->delivered > 0 || $this->queued;
    }
}
