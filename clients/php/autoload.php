<?php
// For projects without Composer: require this file instead of vendor/autoload.php.
spl_autoload_register(function (string $class): void {
    if (str_starts_with($class, 'Pushd\\')) {
        $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, 6)) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
require_once __DIR__ . '/src/functions.php';
