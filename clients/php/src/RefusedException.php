<?php

declare(strict_types=1);

namespace Pushd;

/** pushd answered with an error: its HTTP status and its sentence. */
class RefusedException extends PushdException
{
    public function __construct(public readonly int $status, string $message)
    {
        parent::__construct("$status: $message", $status);
    }
}
